"""`mbv3 export ckpt_path=<ckpt> format=onnx|torchscript|executorch|tflite|coreml [quantize=int8]`.

Writes the model with its class names and preprocessing, checks it against eager PyTorch on
real images and prints the size / latency table; the work is
:func:`mbv3_lightning.deploy.export.export`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig
from rich.console import Console

from mbv3_lightning.cli.config import config_dir, register_resolvers
from mbv3_lightning.cli.errors import reports_errors
from mbv3_lightning.cli.logs import route_lightning_logs
from mbv3_lightning.deploy.export import export, render_report

register_resolvers()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="export")
@reports_errors("export")  # a phone format without its extra: the install line
def main(cfg: DictConfig) -> None:
    route_lightning_logs()
    report = export(cfg)
    Console().print(render_report(report))
    print(f"Exported {report['model_path']}")  # the CLI's final summary


if __name__ == "__main__":
    main()
