"""A lean install: the core trains and predicts without the extras, and a command that needs a
missing extra stops with the line that installs it, before it makes any folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mbv3_lightning.cli.main import COMMANDS, main
from mbv3_lightning.extras import EXTRAS, MissingExtraError, missing_modules, require_extra
from tests.conftest import FAST_OVERRIDES, make_image_folder

# Every module an extra brings, and a subprocess preamble that hides them as a machine without
# them would: every import finder says "not found", so `import` raises ModuleNotFoundError and
# importlib.util.find_spec returns None.
EXTRA_MODULES = sorted({m for extra in EXTRAS.values() for m in extra.modules})
BLOCKER = textwrap.dedent(
    f"""
    import sys
    class Hidden:
        def __init__(self, finder):
            self.finder = finder
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {EXTRA_MODULES!r}:
                return None
            return self.finder.find_spec(name, path, target)
        def __getattr__(self, attribute):
            return getattr(self.finder, attribute)
    sys.meta_path[:] = [Hidden(finder) for finder in sys.meta_path]
    """
)


def _block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # import raises, find_spec says missing


@pytest.mark.parametrize("name", [n for n, c in COMMANDS.items() if c.extra])
def test_a_command_without_its_extra_names_the_install_and_makes_nothing(
    name, monkeypatch, tmp_path, capsys
):
    extra = EXTRAS[COMMANDS[name].extra]
    _block(monkeypatch, *extra.modules)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ended:
        main([name, "ckpt_path=model.ckpt"])
    assert ended.value.code == 1
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0, message
    assert f"mbv3 {name} needs {extra.purpose}" in message
    assert f'pip install "mbv3-lightning[{extra.name}]"' in message
    assert f'-e ".[{extra.name}]"' in message
    assert list(tmp_path.iterdir()) == []


def test_require_extra_passes_when_installed_and_names_the_missing_module(monkeypatch):
    require_extra("export", "format=onnx")  # installed here: no error
    _block(monkeypatch, "onnxruntime")
    assert missing_modules("export") == ["onnxruntime"]
    with pytest.raises(MissingExtraError, match=r"format=onnx needs .*\(onnxruntime\)"):
        require_extra("export", "format=onnx")


def test_predicting_with_an_onnx_file_without_onnx_runtime_names_the_extra(monkeypatch, tmp_path):
    from mbv3_lightning.deploy.predictor import load_predictor

    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read: the runtime is missing first")
    _block(monkeypatch, "onnx", "onnxruntime")
    with pytest.raises(MissingExtraError, match=r"\[export\]"):
        load_predictor(model)


@pytest.mark.slow
def test_the_core_trains_and_predicts_with_no_extra_importable(tmp_path):
    """Training, testing and predicting import none of the extras' modules (a blocker makes
    each of them fail to import, as on a machine without them)."""
    data = make_image_folder(tmp_path / "data", splits={"train": 6, "test": 2})
    overrides = [
        "dataset=image_folder",
        f"dataset.root={data}",
        *FAST_OVERRIDES,
        "model.input_size=32",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    script = BLOCKER + textwrap.dedent(
        f"""
        from mbv3_lightning.cli.main import main
        try:
            main(["train", *{overrides!r}])
        except SystemExit as ended:
            assert not ended.code, ended.code
        main(["predict", "ckpt_path={tmp_path / "run" / "checkpoints" / "last.ckpt"}",
              "inputs={data / "test"}", "hydra.run.dir={tmp_path / "predict"}"])
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {EXTRA_MODULES!r})
        assert not loaded, loaded
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert "predictions.csv" in {p.name for p in (tmp_path / "predict").rglob("*")}


@pytest.mark.slow
def test_a_fresh_install_without_extras_runs_the_demo_and_names_the_app_extra(tmp_path):
    """`pip install .` in a new virtual environment (no extras), then the demo and `mbv3 app`."""
    repo = Path(__file__).resolve().parents[1]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, mbv3 = venv / "bin" / "python", venv / "bin" / "mbv3"
    constraints = repo / "requirements" / "constraints.txt"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", constraints, str(repo)],
        check=True,
        timeout=1800,
    )
    for module in EXTRA_MODULES:
        found = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
        assert found.returncode != 0, f"{module} came with the core install"
    demo = subprocess.run(
        [python, "-m", "mbv3_lightning", "callbacks.progress_bar=null"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "test accuracy" in demo.stdout
    app = subprocess.run([mbv3, "app", "ckpt_path=x.ckpt"], capture_output=True, text=True)
    assert app.returncode == 1
    assert 'pip install "mbv3-lightning[app]"' in app.stderr
