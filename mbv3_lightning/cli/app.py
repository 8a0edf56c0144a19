"""`mbv3 app ckpt_path=<ckpt|onnx|pt|pte|tflite> [port=8501] [top_k=5]`: a web page.

Starts Streamlit (offline: no usage statistics, no browser opened) on the page script
:mod:`mbv3_lightning.deploy.page`, which Streamlit then runs on every page load.
"""

from __future__ import annotations

import sys

from mbv3_lightning.deploy.page import check_model, parse_arguments, streamlit_command


def main() -> None:
    """Start Streamlit on the page (``mbv3 app ...``)."""
    from streamlit.web import cli

    values = parse_arguments(sys.argv[1:])
    check_model(values)
    sys.argv = streamlit_command(values)
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
