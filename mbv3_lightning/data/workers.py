"""How many loader worker processes a training process gets (``dataset.num_workers: null``)."""

from __future__ import annotations

import os

# Workers per training process at most: past this, a many-core node only adds start-up time
# and batches in flight (each worker prefetches two) for a loader that already keeps one GPU
# fed (an assumption: not measured on such a node).
MAX_WORKERS = 32


def default_num_workers(processes: int = 1) -> int:
    """Loader worker processes per training process (``processes``: the devices of this node).

    With two cores or fewer, training already keeps both busy and a worker only competes with
    it (the 2-core demo trained faster without one, RAM cache on). With more cores, every core
    but one per training process, up to ``MAX_WORKERS``.
    """
    cores = os.cpu_count() or 1
    if cores <= 2:
        return 0
    return min(MAX_WORKERS, max(1, cores // max(1, processes) - 1))
