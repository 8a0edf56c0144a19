"""Bird datasets: the paper's 16-species set and Kaggle's BIRDS 525 (gpiosenka/100-bird-species).

Copies of bird sets name their split folders differently (``train/``, ``train_data/``,
``Train/``, ``valid/``, ``val/``, ``test/``); the layout detection finds them all, so these
classes only describe what a copy should look like.
"""

from __future__ import annotations

from mbv3_lightning.data.image_folder import ImageFolderDataModule


class BirdsDataModule(ImageFolderDataModule):
    """The paper's Bird Species set: 16 species, large cluttered photos, unbalanced."""

    expected_layout = (
        "'<root>/train*/<species>/*.jpg' plus optionally 'valid*/' or 'val*/' and 'test*/' "
        "(any case)"
    )


class Birds525DataModule(ImageFolderDataModule):
    """BIRDS 525: 224x224 crops, 5 validation and 5 test images per species."""

    expected_layout = (
        "'<root>/train/<SPECIES>/*.jpg', '<root>/valid/<SPECIES>/*.jpg' and "
        "'<root>/test/<SPECIES>/*.jpg'"
    )
