"""The `mbv3` console script: one command per job, usage instead of tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mbv3_lightning.cli.main import COMMANDS, Command, available, main, suggest

from .conftest import REPO_ROOT


def mbv3(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`mbv3 <args>` (the console script's function, run as the script would)."""
    return subprocess.run(
        [sys.executable, "-m", "mbv3_lightning.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_console_script_is_this_dispatcher():
    # (tomllib is Python >= 3.11; the project supports 3.10)
    scripts = (REPO_ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1]
    assert '\nmbv3 = "mbv3_lightning.cli.main:main"' in scripts
    assert "mbv3-train" not in scripts  # `mbv3 train` and `python -m mbv3_lightning` only


def test_help_lists_the_commands(tmp_path):
    result = mbv3("--help", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    for name in ("train", "predict", "evaluate", "export", "profile", "report", "check", "app"):
        assert f"\n  {name} " in result.stdout


def test_a_command_whose_module_is_missing_is_left_out(monkeypatch, capsys):
    ghost = Command("mbv3_lightning.cli.no_such_command", "", "a command this install lacks")
    monkeypatch.setitem(COMMANDS, "ghost", ghost)
    assert "ghost" not in available() and "train" in available()
    with pytest.raises(SystemExit) as stopped:
        main(["ghost"])
    assert stopped.value.code == 2
    assert "'ghost' is not part of this installation" in capsys.readouterr().err


def test_predict_help_lists_only_its_own_options(tmp_path):
    result = mbv3("predict", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert result.stdout.startswith("usage: mbv3 predict ckpt_path=")
    assert "ckpt_path: ???" in result.stdout and "top_k: 5" in result.stdout
    assert "config groups" not in result.stdout  # no training groups (model, optimizer, ...)
    assert "optimizer" not in result.stdout and "model:" not in result.stdout


def test_missing_checkpoint_is_a_usage_line_not_a_traceback(tmp_path):
    result = mbv3("predict", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "missing required value(s): ckpt_path, inputs" in result.stderr
    assert "usage: mbv3 predict ckpt_path=" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_mistyped_key_gets_a_suggestion_and_nothing_runs(tmp_path):
    result = mbv3("train", "trainer.max_epoch=3", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "did you mean trainer.max_epochs?" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_unknown_command_is_suggested(tmp_path):
    result = mbv3("trian", cwd=tmp_path)
    assert result.returncode == 2 and "Did you mean 'train'?" in result.stderr


def test_overrides_after_the_command_reach_hydra(tmp_path):
    result = mbv3("train", "model=mobilenet_v3_large", "seed=7", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "arch: mobilenet_v3_large" in result.stdout and "seed: 7" in result.stdout


def test_near_miss_suggestions():
    known = ["trainer.max_epochs", "trainer.min_epochs", "model.net.width_mult", "seed"]
    assert suggest("trainer.max_epoch", known) == "trainer.max_epochs"
    assert suggest("model.width_mult", known) == "model.net.width_mult"
    assert suggest("completely_else", known) is None


def test_the_command_modules_answer_help_with_their_own_options(tmp_path):
    """`python -m mbv3_lightning.cli.<command>`: the way in for scripts."""
    for module in ("mbv3_lightning.cli.predict", "mbv3_lightning.cli.app"):
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, module
        assert "ckpt_path" in result.stdout
        assert "Configuration groups" not in result.stdout  # no training groups
