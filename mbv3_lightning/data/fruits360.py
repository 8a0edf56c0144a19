"""Fruits-360 (Kaggle ``moltean/fruits``): ``Training/`` and ``Test/``, 100x100 photos."""

from __future__ import annotations

from mbv3_lightning.data.image_folder import ImageFolderDataModule
from mbv3_lightning.data.layout import Layout


class Fruits360DataModule(ImageFolderDataModule):
    """Paper split: a seeded 30% of ``Training/`` for validation, ``Test/`` for test."""

    expected_layout = (
        "'<root>/fruits-360/Training/<class>/*.jpg' and '<root>/fruits-360/Test/<class>/*.jpg' "
        "(newer releases: '<root>/fruits-360_100x100/fruits-360/Training/...')"
    )

    def choose_layout(self, layouts: list[Layout]) -> Layout:
        """Newer archives hold a 100x100 and an original-size copy; the paper used 100x100."""
        preferred = [lay for lay in layouts if "100x100" in str(lay.root.relative_to(self.root))]
        return super().choose_layout(preferred or layouts)
