"""`mbv3 app ckpt_path=<ckpt|onnx|pt|pte|tflite> [port=8501] [top_k=5]`: a web page.

Upload images (or pick a bundled sample photo) to see the model's top_k classes as a bar chart,
with the model's name, classes and latency. The page listens on address:port
(127.0.0.1: this machine only), sends no usage statistics and opens no browser. A plain state
dict (best.pth) also needs classes=<class_indices.json> and arch=<architecture, e.g.
mobilenet_v3_small> [input_size=224]. The page is a Streamlit script,
mbv3_lightning/deploy/page.py.
"""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from mbv3_lightning.cli.exit_status import usage_error
from mbv3_lightning.cli.path_check import path_errors
from mbv3_lightning.deploy.page import check_model, parse_arguments, streamlit_command


def main() -> None:
    """Start Streamlit on the page (``mbv3 app ...``)."""
    values = parse_arguments(sys.argv[1:])
    problems = path_errors(OmegaConf.create({k: v or None for k, v in values.items()}), "app")
    if problems:
        usage_error("\n".join(f"mbv3 app: {problem}" for problem in problems))
    check_model(values)
    from streamlit.web import cli  # imported once the model is known to load

    sys.argv = streamlit_command(values)
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
