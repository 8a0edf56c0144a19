"""Checkpoints written the way every run file is: complete under their final name, or absent."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mbv3_lightning.runs.run_dir import write_atomic


class RunFolderCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, saving through a temporary file in the checkpoint's own
    folder (flushed, then renamed: :func:`write_atomic`).

    Lightning's own writer goes through an fsspec transaction whose temporary file lies in the
    system's temp folder; on another filesystem the final step is a copy, so a full disk left
    a truncated ``last.ckpt`` under its final name in place of the previous good one.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options.")
        # Serialised in memory first, as Lightning does: torch.save reports a full disk as a
        # RuntimeError of its zip writer, a plain file write as the OSError it is.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getbuffer())
