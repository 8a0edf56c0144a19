"""The web page in a real browser: headless Chromium uploads images to the Streamlit page."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mbv3_lightning.data.images import load_rgb
from mbv3_lightning.deploy.page import parse_arguments, streamlit_command
from mbv3_lightning.deploy.predictor import load_predictor
from mbv3_lightning.runs.manifest import manifest_samples

from .conftest import write_recipe_files

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# Under a loaded 2-core machine the first model load and page render can take a while.
PAGE_TIMEOUT_MS = 180_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_healthy(url: str, server: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"Streamlit exited early:\n{server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"Streamlit did not answer at {url} within {timeout_s} s.")


@pytest.fixture(params=["checkpoint", "state_dict"])
def page_server(request, trained_checkpoint, tmp_path_factory):
    """The page on the project's checkpoint, or on the recipe's best.pth + class_indices.json."""
    port = _free_port()
    if request.param == "checkpoint":
        model_args = [f"ckpt_path={trained_checkpoint}"]
    else:
        pth, classes = write_recipe_files(trained_checkpoint, tmp_path_factory.mktemp("recipe"))
        model_args = [
            f"ckpt_path={pth}",
            f"classes={classes}",
            "arch=mobilenet_v3_small",
            "input_size=32",
        ]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mbv3_lightning.cli.app",
            *model_args,
            f"port={port}",
            "top_k=3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_healthy(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason="needs Debian's chromium at /usr/bin/chromium (`apt-get install -y chromium`; "
    ".ci/run installs it)",
)
def test_page_classifies_an_upload_and_rejects_a_non_image(
    page_server, trained_checkpoint, tmp_path
):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e .[dev]")
    image = manifest_samples(trained_checkpoint, ["test"])[0][0]
    predictor = load_predictor(trained_checkpoint)
    probabilities = predictor.predict([load_rgb(image)])[0]
    expected = predictor.info.class_names[int(probabilities.argmax())]
    not_an_image = tmp_path / "holiday.jpg"
    not_an_image.write_text("this is a text file")

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(page_server, timeout=PAGE_TIMEOUT_MS)
            page.get_by_text("mobilenet_v3_small").wait_for(timeout=PAGE_TIMEOUT_MS)
            page.locator("input[type=file]").set_input_files(str(image))
            page.get_by_role("heading", name=expected).wait_for(timeout=PAGE_TIMEOUT_MS)
            # Streamlit streams the panel element by element: wait for the latency too.
            latency = page.get_by_text("ms (preprocessing + forward pass")
            latency.wait_for(timeout=PAGE_TIMEOUT_MS)
            assert float(latency.inner_text().split(" ms")[0]) > 0
            if screenshot := os.environ.get("MBV3_APP_SCREENSHOT"):
                page.screenshot(path=screenshot, full_page=True)

            page.locator("input[type=file]").set_input_files(str(not_an_image))
            message = page.get_by_text("'holiday.jpg' is not an image that can be read")
            message.wait_for(timeout=PAGE_TIMEOUT_MS)
            assert "Upload JPEG, PNG" in message.inner_text()
        finally:
            browser.close()


def test_page_arguments_are_checked_and_forwarded_offline():
    values = parse_arguments(["ckpt_path=model.onnx", "port=9001"])
    command = streamlit_command(values)
    assert "--browser.gatherUsageStats=false" in command  # no telemetry: works offline
    assert "--server.address=127.0.0.1" in command and "--server.port=9001" in command
    assert command[-2:] == ["ckpt_path=model.onnx", "top_k=5"]
    with pytest.raises(SystemExit, match="Unexpected argument 'model=x'"):
        parse_arguments(["model=x"])
    with pytest.raises(SystemExit, match="Give the model"):
        parse_arguments([])
    state_dict = parse_arguments(["ckpt_path=best.pth", "classes=c.json", "arch=alexnet"])
    assert streamlit_command(state_dict)[-3:] == ["top_k=5", "classes=c.json", "arch=alexnet"]
    with pytest.raises(SystemExit, match="needs both classes= and arch="):
        parse_arguments(["ckpt_path=best.pth", "classes=c.json"])
