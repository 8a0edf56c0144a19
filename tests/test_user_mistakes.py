"""A user's mistake through `mbv3`: one line naming what is wrong, exit status 2, no traceback,
and nothing made under outputs/. Run in this process through the console script's function
(`mbv3_lightning.cli.main.main`), which hands over to each command's real Hydra entry."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from mbv3_lightning.cli.main import available, main, plain_text
from mbv3_lightning.cli.path_check import file_problem, folder_problem, images_problem

from .conftest import write_image


def _mbv3(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``mbv3 <args>`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["mbv3", *args])  # the dispatcher rewrites it; restored
    with pytest.raises(SystemExit) as stop:
        main(args)
    out, err = capsys.readouterr()
    code = stop.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    """A working folder holding one image (``photo.jpg``) and one stand-in model file
    (``model.ckpt``, never loaded: the check stops the command first)."""
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "photo.jpg", (200, 40, 40))
    (tmp_path / "model.ckpt").write_bytes(b"not loaded")
    return tmp_path


IMAGE_FOLDER = ["dataset=image_folder", "dataset.root=no_such_folder"]
# (command line, the key and the value its one line must name): every command, every kind of
# path it reads (the kinds of wrong are test_what_is_wrong_with_a_path's)
WRONG_PATHS = [
    (["predict", "ckpt_path=nope.ckpt", "inputs=photo.jpg"], "ckpt_path='nope.ckpt'"),
    (["predict", "ckpt_path=model.ckpt", "inputs=photos/"], "inputs='photos/'"),
    (
        [
            "predict",
            "ckpt_path=model.ckpt",
            "inputs=photo.jpg",
            "classes=nope.json",
            "arch=alexnet",
        ],
        "classes='nope.json'",
    ),
    (["export", "ckpt_path=nope.ckpt"], "ckpt_path='nope.ckpt'"),
    (["export", "ckpt_path=model.ckpt", "test_dir=photo.jpg"], "test_dir='photo.jpg'"),
    (["evaluate", "ckpt_path=nope.ckpt"], "ckpt_path='nope.ckpt'"),
    (["evaluate", "ckpt_path=model.ckpt", *IMAGE_FOLDER], "dataset.root='no_such_folder'"),
    (["review", "ckpt_path=nope.ckpt"], "ckpt_path='nope.ckpt'"),
    (["train", *IMAGE_FOLDER], "dataset.root='no_such_folder'"),
    (["train", "ckpt_path=nope.ckpt"], "ckpt_path='nope.ckpt'"),
    (["train", "model.net.weights_path=nope.pth"], "model.net.weights_path='nope.pth'"),
    (["check", *IMAGE_FOLDER], "dataset.root='no_such_folder'"),
    (["app", "ckpt_path=nope.ckpt"], "ckpt_path='nope.ckpt'"),
]


@pytest.mark.parametrize(("args", "named"), WRONG_PATHS, ids=[" ".join(a) for a, _ in WRONG_PATHS])
def test_a_wrong_path_is_one_line_and_exit_2(args, named, workdir, monkeypatch, capsys):
    code, out, err = _mbv3(args, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mbv3 {args[0]}: {named}"), lines[0]
    assert "Traceback" not in err + out and "Error executing job" not in err
    assert sorted(p.name for p in workdir.iterdir()) == ["model.ckpt", "photo.jpg"]  # no outputs/


def test_what_is_wrong_with_a_path(workdir):
    (workdir / "empty").mkdir()
    hint = "give X"
    assert file_problem("k", "model.ckpt", hint) is None
    assert (
        file_problem("k", "empty", hint)
        == f"k='empty' (in {workdir}) is a folder, not a file; give X"
    )
    assert folder_problem("k", "empty", hint) is None
    assert folder_problem("k", str(workdir / "photo.jpg"), hint) == (
        f"k='{workdir / 'photo.jpg'}' is a file, not a folder; give X"
    )
    for found in ("photo.jpg", ".", "*.jpg", str(workdir / "**" / "*.jpg")):
        assert images_problem("inputs", found) is None, found
    assert "'empty' (in " in images_problem("inputs", "empty")
    assert "matched no image files" in images_problem("inputs", "empty")
    assert "matched no image files" in images_problem("inputs", "*.png")
    assert "does not exist" in images_problem("inputs", "photos/")


def test_a_relative_path_names_the_folder_it_was_looked_for_in(workdir, monkeypatch, capsys):
    _, _, err = _mbv3(["evaluate", "ckpt_path=runs/best.ckpt"], monkeypatch, capsys)
    assert f"ckpt_path='runs/best.ckpt' (in {workdir}) does not exist" in err


def test_a_named_dataset_that_is_missing_says_how_to_get_it(workdir, monkeypatch, capsys):
    code, _, err = _mbv3(["check", "dataset=fruits360"], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "dataset.root='data/fruits360'" in err and "does not exist" in err
    assert "fruits-360/Training/<class>" in err  # the layout the dataset expects
    assert "'moltean/fruits') with dataset.download=true" in err


def test_every_wrong_path_is_listed(workdir, monkeypatch, capsys):
    code, _, err = _mbv3(["predict", "ckpt_path=nope.ckpt", "inputs=nope/"], monkeypatch, capsys)
    assert code == 2
    assert [line.split("=")[0] for line in err.strip().splitlines()] == [
        "mbv3 predict: ckpt_path",
        "mbv3 predict: inputs",
    ]


def test_an_unknown_group_value_lists_the_choices_and_the_nearest(workdir, monkeypatch, capsys):
    code, _, err = _mbv3(["train", "model=mobilenet_v3_larg"], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith("mbv3 train: model=mobilenet_v3_larg is not a choice of 'model'.")
    assert "Did you mean mobilenet_v3_large?" in first
    assert "Choices: alexnet, inception_v3, " in first and "shufflenet_v2" in first
    assert "Config search path" not in err and "file://" not in err
    _, _, err = _mbv3(["profile", "model=mobilenetv2"], monkeypatch, capsys)
    assert "Did you mean mobilenet_v2?" in err
    _, _, err = _mbv3(["train", "experiment=nothing_like_it"], monkeypatch, capsys)
    assert "Did you mean" not in err and "'experiment'. Choices: car_colours, demo_grid" in err


# reST roles (:func:`x`, :class:`x`, :mod:`x`, :meth:`x`) and inline literals (``x``)
MARKUP = re.compile(r":[a-z]+:`|``")


@pytest.mark.parametrize("name", list(available()))
def test_help_is_plain_text(name, monkeypatch, capsys):
    code, out, _ = _mbv3([name, "--help"], monkeypatch, capsys)
    assert code == 0 and out.startswith(f"usage: mbv3 {name}")
    assert not MARKUP.search(out), MARKUP.search(out)


def test_the_overview_is_plain_text(monkeypatch, capsys):
    code, out, _ = _mbv3(["--help"], monkeypatch, capsys)
    assert code == 0 and "mbv3 --version" in out and not MARKUP.search(out)


def test_docstring_markup_becomes_plain_text():
    doc = "Uses :func:`mbv3_lightning.sweeps.report.write_report`, :mod:`~a.b.page` and ``x=1``."
    assert plain_text(doc) == "Uses `mbv3_lightning.sweeps.report.write_report`, `page` and `x=1`."


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_names_the_package_torch_lightning_and_hydra(flag, monkeypatch, capsys):
    import hydra
    import lightning
    import torch

    import mbv3_lightning

    code, out, _ = _mbv3([flag], monkeypatch, capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[:4] == [
        f"mbv3-lightning {mbv3_lightning.__version__}",
        f"torch {torch.__version__}",
        f"lightning {lightning.__version__}",
        f"hydra-core {hydra.__version__}",
    ]
    assert lines[4].startswith("python 3.")


def test_an_unknown_choice_in_a_grid_stops_the_sweep_before_any_cell(workdir, monkeypatch, capsys):
    args = ["train", "-m", "model=mobilenet_v2,mobilenet_v3_larg", "sweep.dry_run=true"]
    code, _, err = _mbv3(args, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err and "Config search path" not in err
    assert "(cell 1: model=mobilenet_v3_larg): model=mobilenet_v3_larg is not a choice" in err
    assert "Did you mean mobilenet_v3_large?" in err
    assert not (workdir / "outputs").exists()
