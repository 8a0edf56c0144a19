"""What a training run prints: a progress bar with loss and accuracy that fits 80 columns, and
no library chatter that does not concern the user.

Every filter here names one message and the module that emits it, so a new or unexpected
warning still reaches the console (no blanket ``warnings.simplefilter("ignore")``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from lightning.pytorch.callbacks import RichProgressBar
from rich.table import Column

# The progress bar shows these, under the short names a user reads at a glance.
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


class CompactProgressBar(RichProgressBar):
    """Lightning's rich bar with loss and accuracy only (no ``v_num``, no AUROC, F1, ...), on
    one line of an 80-column terminal.

    The full set of metrics is in metrics.csv and the final summary; thirteen of them on the
    bar wrapped it over many lines. For the same reason the bar is short and the elapsed time
    and speed columns are left out (train.log and metrics.json time the run).
    """

    BAR_WIDTH = 8

    def configure_columns(self, trainer: Any) -> list:
        description, bar, batches = super().configure_columns(trainer)[:3]
        bar.bar_width = self.BAR_WIDTH
        if self._metric_component is not None:
            # Rich wraps a wrappable column before it narrows the bar, which put val_acc's value
            # on a second line; unwrappable metrics make the bar give way instead.
            self._metric_component._table_column = Column(no_wrap=True)
        return [description, bar, batches]

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        shown: dict[str, Any] = {}
        for key, short in PROGRESS_METRICS.items():
            if key in metrics:
                value = float(metrics[key])  # type: ignore[arg-type]  # a logged scalar
                # accuracy to 0.1 %, loss to 3 significant digits (2.08, 0.0412)
                shown[short] = f"{value:.3f}" if key.endswith("acc") else f"{value:.3g}"
        return shown
