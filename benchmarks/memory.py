"""Peak resident memory of the demo run and of scanning a Fruits-360-sized folder."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

FRUITS360_TRAIN_IMAGES = 90_000  # the paper's version: 67,692 train + 22,688 test = 90,380
FRUITS360_CLASSES = 131

# The scripts below run in fresh interpreters and print JSON on their last line. They read
# the peak from /proc (VmHWM), not getrusage: Linux carries ru_maxrss across exec, so a child
# started by this (by then multi-GB) benchmark process would report the parent's peak.
_RSS_MB = """
def rss_mb(field):  # VmRSS: resident now; VmHWM: peak so far
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
"""

_SCAN_SCRIPT = (
    _RSS_MB
    + """
import json, sys
from mbv3_lightning.data.image_folder import ImageFolderDataModule

base = rss_mb("VmRSS")
dm = ImageFolderDataModule(sys.argv[1], num_workers=0, input_size=100, cache=False)
dm.setup()
print(json.dumps({"images": sum(len(d) for d in dm.datasets.values()),
                  "baseline_mb": base, "after_mb": rss_mb("VmRSS"), "peak_mb": rss_mb("VmHWM")}))
"""
)

_DEMO_SCRIPT = (
    _RSS_MB
    + """
import json, runpy, sys
sys.argv = ["mbv3_lightning", *sys.argv[1:]]
try:
    runpy.run_module("mbv3_lightning", run_name="__main__")
except SystemExit:
    pass
print(json.dumps({"peak_mb": rss_mb("VmHWM")}))
"""
)


def make_synthetic_fruits360(root: Path, total: int) -> Path:
    """``root/train|test/<class>/<i>.jpg``: ``total`` tiny JPEGs, 3/4 train and 1/4 test."""
    tiny = Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8))
    per_class = total // FRUITS360_CLASSES
    n_train = per_class * 3 // 4
    for c in range(FRUITS360_CLASSES):
        for split, count in (("train", n_train), ("test", per_class - n_train)):
            folder = root / split / f"Fruit {c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                tiny.save(folder / f"r_{i}_100.jpg", quality=50)
    return root


def _last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run(device: str, quick: bool) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        total = 9_000 if quick else FRUITS360_TRAIN_IMAGES
        root = make_synthetic_fruits360(Path(tmp) / "fruits", total)
        scan = subprocess.run(
            [sys.executable, "-c", _SCAN_SCRIPT, str(root)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = _last_json_line(scan.stdout)
        growth = result["after_mb"] - result["baseline_mb"]
        rows.append(
            {
                "what": f"scan + setup of {result['images']:,} JPEGs (no cache)",
                "peak_rss_mb": round(result["peak_mb"], 1),
                "rss_before_scan_mb": round(result["baseline_mb"], 1),
                "rss_after_scan_mb": round(result["after_mb"], 1),
                "growth_mb": round(growth, 1),
                "bytes_per_image": round(growth * 2**20 / result["images"]),
            }
        )
        demo = subprocess.run(
            [
                sys.executable,
                "-c",
                _DEMO_SCRIPT,
                f"hydra.run.dir={Path(tmp) / 'demo'}",
                f"trainer.accelerator={'gpu' if device.startswith('cuda') else 'cpu'}",
                *(["trainer.max_epochs=2"] if quick else []),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(
            {
                "what": "demo run (main process)",
                "peak_rss_mb": round(_last_json_line(demo.stdout)["peak_mb"], 1),
            }
        )
    per_image = rows[0]["bytes_per_image"]
    return {
        "title": "Peak resident memory",
        "goal": "scanning holds no decoded images (a 100x100 RGB image is 30,000 bytes)",
        "ratio": per_image,
        "met": per_image < 30_000 / 10,
        "rows": rows,
    }
