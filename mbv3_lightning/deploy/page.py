"""`mbv3 app ckpt_path=<ckpt|onnx|pt|pte|tflite> [port=8501] [top_k=5]`: a web page.

Upload one or more images and see the top-k classes as a bar chart, with the model's name,
classes and latency. Streamlit, as in the car-colour MobileNetV3 recipe: a page is one short
script, uploads of several files and a cached model come built in, and it needs no front-end
code.

``mbv3 app`` (mbv3_lightning/cli/app.py) starts Streamlit on this file
(offline: no usage statistics, no browser opened); Streamlit then runs it as the page script.
Arguments are plain ``key=value`` pairs instead of a Hydra config: the page composes no
model or dataset config, and Streamlit owns the process and its command line.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from mbv3_lightning.data.images import UNREADABLE_IMAGE_ERRORS
from mbv3_lightning.deploy.predictor import Predictor, load_predictor, top_k
from mbv3_lightning.extras import MissingExtraError

DEFAULTS: dict[str, str] = {
    "ckpt_path": "",
    "port": "8501",
    "address": "127.0.0.1",
    "top_k": "5",
    # a plain state dict (the car-colour MobileNetV3 recipe's best.pth) also needs these two
    "classes": "",
    "arch": "",
    "input_size": "",
}
USAGE = (
    "mbv3 app ckpt_path=<ckpt|onnx|pt|pte|tflite> [port=8501] [address=127.0.0.1] "
    "[top_k=5]; a state dict (best.pth) also needs classes=<class_indices.json> "
    "arch=<architecture, e.g. mobilenet_v3_small> [input_size=224]"
)
READABLE_FORMATS = "JPEG, PNG, BMP, GIF, WebP or TIFF"
USAGE = (
    "usage: mbv3 app ckpt_path=<ckpt|onnx|pt|pte|tflite> [port=8501] [address=127.0.0.1] [top_k=5]"
)
# A few photos of the bundled demo set (see samples/README.md for their source and licence).
SAMPLES_DIR = Path(__file__).with_name("samples")
# Small photos are enlarged at most this much (browsers smooth, not pixelate, up to ~2x) and
# shown no wider than MAX_DISPLAY_PX.
MAX_UPSCALE = 2
MAX_DISPLAY_PX = 320


def sample_images() -> dict[str, Path]:
    """The bundled sample photos, by name."""
    return {p.stem: p for p in sorted(SAMPLES_DIR.glob("*.jpg"))}


def display_width(image_width: int) -> int:
    """Width to show an image at: never stretched to the column (a 100-px photo blown up
    to 400 px is a blur of squares), at most doubled, at most MAX_DISPLAY_PX."""
    return max(1, min(image_width * MAX_UPSCALE, MAX_DISPLAY_PX))


def parse_arguments(argv: list[str]) -> dict[str, str]:
    """``["ckpt_path=x.ckpt", "port=8502"]`` -> a dict; unknown or missing keys are errors."""
    values = dict(DEFAULTS)
    if any(a in ("-h", "--help") for a in argv):
        print(
            f"{USAGE}\n\nA web page that classifies uploaded images (and bundled sample photos)"
            " with the model; binds to 127.0.0.1, sends no usage statistics."
        )
        raise SystemExit(0)
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep or key not in DEFAULTS:
            raise SystemExit(f"Unexpected argument '{argument}'.\n{USAGE}")
        values[key] = value
    if not values["ckpt_path"]:
        raise SystemExit(f"Give the model with ckpt_path=...\n{USAGE}")
    if bool(values["classes"]) != bool(values["arch"]):
        raise SystemExit(f"A state dict needs both classes= and arch=.\n{USAGE}")
    return values


def check_model(values: dict[str, str]) -> None:
    """Load the model once before the server starts, so a missing, unsafe or broken file stops
    the command with its name instead of starting a page that cannot predict."""
    try:
        load_predictor(values["ckpt_path"], **predictor_arguments(values))  # type: ignore[arg-type]
    except (FileNotFoundError, ValueError, MissingExtraError) as error:
        raise SystemExit(f"Cannot serve '{values['ckpt_path']}': {error}") from None


def streamlit_command(values: dict[str, str]) -> list[str]:
    """``streamlit run`` on this file, headless and offline, forwarding the page's arguments."""
    return [
        "streamlit",
        "run",
        str(Path(__file__).resolve()),
        f"--server.port={values['port']}",
        f"--server.address={values['address']}",
        "--server.headless=true",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
        "--global.developmentMode=false",
        "--client.toolbarMode=viewer",
        "--",
        f"ckpt_path={values['ckpt_path']}",
        f"top_k={values['top_k']}",
        *(f"{key}={values[key]}" for key in ("classes", "arch", "input_size") if values[key]),
    ]


def predictor_arguments(values: dict[str, str]) -> dict[str, object]:
    """The keyword arguments of :func:`load_predictor` for a state dict, if one was given."""
    return {
        "classes": values.get("classes") or None,
        "arch": values.get("arch") or None,
        "input_size": int(values["input_size"]) if values.get("input_size") else None,
    }


def render_page(ckpt_path: str, k: int, model_args: dict[str, object] | None = None) -> None:
    """The page: model facts, an uploader, and one prediction panel per uploaded file."""
    import altair as alt
    import pandas as pd
    import streamlit as st

    from mbv3_lightning.data.images import load_rgb

    @st.cache_resource(show_spinner="Loading the model...")
    def cached_predictor(path: str, classes: object, arch: object, size: object) -> Predictor:
        predictor = load_predictor(path, classes=classes, arch=arch, input_size=size)  # type: ignore[arg-type]
        predictor.warm_up()  # so the first timed prediction is a typical one
        return predictor

    st.set_page_config(page_title="mbv3-lightning classifier", layout="wide")
    model_args = model_args or {}
    predictor = cached_predictor(
        ckpt_path, model_args.get("classes"), model_args.get("arch"), model_args.get("input_size")
    )
    info = predictor.info
    st.title("Image classifier")
    st.markdown(
        f"**Model:** `{info.arch}` ({predictor.runtime}) · **input:** {info.input_size} px · "
        f"**file:** `{predictor.source.name}`"
    )
    with st.expander(f"{len(info.class_names)} classes"):
        st.write(", ".join(info.class_names))

    uploads = st.file_uploader("Upload one or more images", accept_multiple_files=True)
    samples = sample_images()
    chosen = st.pills("...or try a sample photo", list(samples), selection_mode="multi")
    files = [(u.name, u.getvalue()) for u in uploads or []]
    files += [(f"sample: {name}.jpg", samples[name].read_bytes()) for name in chosen or []]
    for name, data in files:
        try:
            image = load_rgb(io.BytesIO(data))
        except UNREADABLE_IMAGE_ERRORS:
            st.error(f"'{name}' is not an image that can be read. Upload {READABLE_FORMATS} files.")
            continue
        started = time.perf_counter()
        probabilities = predictor.predict([image])[0]
        latency_ms = (time.perf_counter() - started) * 1000
        ranked = top_k(probabilities, info.class_names, k)
        picture, result = st.columns([1, 2])
        picture.image(image, caption=name, width=display_width(image.width))
        result.subheader(f"{ranked[0][0]} · {ranked[0][1]:.1%}")
        chart_data = pd.DataFrame(ranked, columns=["class", "probability"])
        chart_data["label"] = [f"{p:.1%}" for p in chart_data["probability"]]
        base = alt.Chart(chart_data).encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            y=alt.Y("class:N", sort="-x", title=None),
        )
        # the value next to every bar, so a 0.0% bar reads as a result, not an empty chart
        labels = base.mark_text(align="left", dx=4).encode(text="label:N")
        result.altair_chart(base.mark_bar() + labels, width="stretch")
        result.caption(
            f"{latency_ms:.1f} ms (preprocessing + forward pass, {predictor.device}, "
            f"{predictor.runtime})"
        )


def _running_inside_streamlit() -> bool:
    from streamlit import runtime

    return runtime.exists()


if __name__ == "__main__" and _running_inside_streamlit():
    page_args = parse_arguments(sys.argv[1:])
    render_page(page_args["ckpt_path"], int(page_args["top_k"]), predictor_arguments(page_args))
