"""Car colours in the car-colour MobileNetV3 recipe's layout (the public VCoR set has it, with
15 colours)."""

from __future__ import annotations

from mbv3_lightning.data.image_folder import ImageFolderDataModule


class CarColoursDataModule(ImageFolderDataModule):
    """Classes are the colour folder names; ``dataset.classes`` narrows 15 colours to 10."""

    expected_layout = (
        "'<root>/train/<colour>/*.jpg' and '<root>/val/<colour>/*.jpg' (optionally "
        "'<root>/test/<colour>/*.jpg')"
    )
