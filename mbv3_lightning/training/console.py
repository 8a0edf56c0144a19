"""What a training run prints: a progress bar with its times, speed, loss and accuracy that fits
80 columns, and no library chatter that does not concern the user.

Every filter here names one message and the module that emits it, so a new or unexpected
warning still reaches the console (no blanket ``warnings.simplefilter("ignore")``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Generator
from typing import Any

import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import (
    MetricsTextColumn,
    RichProgressBarTheme,
)
from rich.progress import ProgressColumn, Task
from rich.table import Column
from rich.text import Text

from mbv3_lightning.runs.clock import clock

# The progress bar shows these, under the short names a user reads at a glance: the training
# scores on the bar's line, the validation scores below.
PROGRESS_METRICS = {
    "train/loss": "loss",
    "train/acc": "acc",
    "val/loss": "val_loss",
    "val/acc": "val_acc",
}

# Lightning's own pytree helper still builds `LeafSpec()`, which torch deprecates; nothing a
# user of this project can change.
_LEAFSPEC_MESSAGE = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
# Lightning advertises its cloud logger once per Trainer.
_LITLOGGER_TIP = "Tip: For seamless cloud logging"


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def silence_library_noise() -> None:
    """Install the targeted filters once per process (idempotent)."""
    warnings.filterwarnings("ignore", message=_LEAFSPEC_MESSAGE)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessage) for f in rank_zero.filters):
        rank_zero.addFilter(_DropMessage(_LITLOGGER_TIP))


class _ElapsedAndLeft(ProgressColumn):
    """``0:12<0:03``: the time a bar has run and the time it still needs, as tqdm writes it."""

    max_refresh = 0.5  # twice a second, so the seconds do not flicker

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        return Text(f"{clock(elapsed)}<{clock(task.time_remaining)}", style="dim")


class _ImagesPerSecond(ProgressColumn):
    """Images per second since the bar started: its ``images`` field over its elapsed time
    (Lightning's own column counts batches, whose size differs between stages)."""

    max_refresh = 0.5

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        images = task.fields.get("images", 0)
        if not images or not elapsed:
            return Text("- img/s", style="dim")
        rate = images / elapsed
        return Text(f"{rate:.0f} img/s" if rate >= 10 else f"{rate:.1f} img/s", style="dim")


class _TrainOverVal(MetricsTextColumn):
    """The training scores on the bar's line and the validation scores under them, so the bar
    with its times keeps to 80 columns."""

    def _generate_metrics_texts(self) -> Generator[str, None, None]:
        for stage in ("train/", "val/"):
            shown = [
                f"{short}: {self._metrics[short]}"
                for key, short in PROGRESS_METRICS.items()
                if key.startswith(stage) and short in self._metrics
            ]
            if shown:
                yield " ".join(shown)


def _images_in(batch: Any) -> int:
    """How many images a batch holds: the length of its first tensor (the images of
    ``(images, labels)``, or the canvases of ``((canvases, boxes), labels)`` before the device
    augments them)."""
    while isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    return len(batch) if isinstance(batch, torch.Tensor) else 0


class CompactProgressBar(RichProgressBar):
    """Lightning's rich bar with elapsed time, time left, images per second, and loss and
    accuracy only (no ``v_num``, no AUROC, F1, ...), within an 80-column terminal.

    ``Epoch 1/12 ━━━━ 17/17 0:12<0:00 85 img/s loss: 0.121 acc: 0.925`` with
    ``val_loss: ... val_acc: ...`` on the line below. Epochs are counted from 1 here, as
    people count them; the files keep Lightning's 0-based ``epoch`` (docs/metrics.md). The
    full set of metrics is in metrics.csv and the final summary.
    """

    BAR_WIDTH = 8

    def __init__(self) -> None:
        super().__init__(theme=RichProgressBarTheme(metrics_text_delimiter="\n"))
        self._images: dict[int, int] = {}  # per Rich task: images its batches held so far

    def configure_columns(self, trainer: Any) -> list:
        description, bar, batches = super().configure_columns(trainer)[:3]
        bar.bar_width = self.BAR_WIDTH
        # `_init_progress` passes `self._metric_component` after these columns, so it is read
        # after this swap. Unwrappable, so the bar gives way before a score is cut in two.
        theme = self.theme
        self._metric_component = _TrainOverVal(
            trainer, theme.metrics, theme.metrics_text_delimiter, theme.metrics_format
        )
        self._metric_component._table_column = Column(no_wrap=True)
        return [description, bar, batches, _ElapsedAndLeft(), _ImagesPerSecond()]

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        shown = f"Epoch {current_epoch + 1}" + (f"/{max_epochs}" if max_epochs else "")
        # as wide as "Validation", so the bars do not jump between the two
        return f"{shown:{len(self.validation_description)}}"

    def _count(self, task_id: Any, batch: Any) -> None:
        if self.progress is None or task_id is None:
            return
        self._images[task_id] = self._images.get(task_id, 0) + _images_in(batch)
        self.progress.update(task_id, images=self._images[task_id])

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        # Lightning resets one task at every epoch: so does the count
        if self.progress is not None and self.train_progress_bar_id is not None:
            self._images[self.train_progress_bar_id] = 0
            self.progress.update(self.train_progress_bar_id, images=0)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._count(self.train_progress_bar_id, batch)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._count(self.val_progress_bar_id, batch)
        super().on_validation_batch_end(
            trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
        )

    def on_test_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._count(self.test_progress_bar_id, batch)
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        shown: dict[str, Any] = {}
        for key, short in PROGRESS_METRICS.items():
            if key in metrics:
                value = float(metrics[key])  # type: ignore[arg-type]  # a logged scalar
                # accuracy to 0.1 %, loss to 3 significant digits (2.08, 0.0412)
                shown[short] = f"{value:.3f}" if key.endswith("acc") else f"{value:.3g}"
        return shown
