"""docs/search.md: every shell command on the page, run as written, in order, in an empty folder.

The page's commands are listed here as well, so a change to the page that this test does not
follow fails at once (the fast test) instead of going unrun.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from .conftest import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "search.md"
DEMO_STORAGE = "sqlite:///outputs/search/optuna_demo/optuna.db"
COMMANDS = [
    "mbv3 train -m experiment=optuna_demo hydra/launcher=joblib hydra.launcher.n_jobs=2",
    "mbv3 report outputs/search/optuna_demo",
    "mbv3 train -m experiment=optuna_demo",
    "mbv3 train -m experiment=optuna_demo hydra.sweeper.n_trials=14",
    "mbv3 train -m experiment=optuna_demo hydra.sweeper.n_trials=16 & "
    "mbv3 train -m experiment=optuna_demo hydra.sweeper.n_trials=16 & wait",
    "python -c \"import optuna; s = optuna.load_study(study_name='optuna_demo', "
    f"storage='{DEMO_STORAGE}'); print(s.best_trial.params)\"",
    f"optuna-dashboard {DEMO_STORAGE}",
    "mbv3 train -m experiment=mobilenet_search",
    "mbv3 report outputs/search/mobilenet_search",
]


def page_commands() -> list[str]:
    """The lines of the page's ```bash blocks, but those under a `docs-test: skip` marker (the
    .pte latency study needs the [mobile] extra; tests/test_search.py runs such a study)."""
    marked = r"(<!-- docs-test: skip [^\n]*-->\n)?```bash\n(.*?)```"
    blocks = re.findall(marked, PAGE.read_text(), flags=re.S)
    return [
        line
        for skipped, block in blocks
        if not skipped
        for line in block.splitlines()
        if line.strip()
    ]


def test_the_page_shows_the_commands_this_test_runs():
    assert page_commands() == COMMANDS


def _shell(
    command: str, cwd: Path, timeout: float = 1800
) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return result, time.monotonic() - started


def _states(cwd: Path, name: str) -> list[TrialState]:
    storage = f"sqlite:///{cwd / 'outputs' / 'search' / name / 'optuna.db'}"
    return [t.state for t in optuna.load_study(study_name=name, storage=storage).trials]


def _dashboard_serves(command: str, cwd: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with urllib.request.urlopen("http://127.0.0.1:8080/api/studies", timeout=5) as r:
                    studies = json.loads(r.read())["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not answer in 2 minutes"
                time.sleep(1)
        assert [s["study_name"] for s in studies] == ["optuna_demo"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_every_command_of_the_page_runs(tmp_path):
    timings = {}
    for command in page_commands():
        if command.startswith("optuna-dashboard"):
            _dashboard_serves(command, tmp_path)
            continue
        result, seconds = _shell(command, tmp_path)
        timings[command] = seconds
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        if command == COMMANDS[0]:
            states = _states(tmp_path, "optuna_demo")
            assert len(states) == 12 and TrialState.PRUNED in states, states
            assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
            assert "[HYDRA] setup plugin" not in result.stdout + result.stderr
            assert "Sweep of ? cells" not in result.stdout + result.stderr
        elif command == COMMANDS[2]:
            assert "12 of 12 trials finished" in result.stdout
            assert "Launching" not in result.stdout  # nothing left to run
        elif command == COMMANDS[3]:
            assert len(_states(tmp_path, "optuna_demo")) == 14
        elif command == COMMANDS[4]:
            states = _states(tmp_path, "optuna_demo")
            assert len(states) == 16 and TrialState.RUNNING not in states
        elif command == COMMANDS[5]:
            assert "optimizer.lr" in result.stdout
        elif command == COMMANDS[8]:
            text = (tmp_path / "outputs/search/mobilenet_search/report/report.md").read_text()
            front = re.search(r"### Pareto front: (\d+) of 10 trials", text)
            assert front and int(front.group(1)) >= 3, text[-3000:]
            assert "### Dominated trials:" in text
    for command, seconds in timings.items():
        print(f"{seconds:7.1f} s  {command}")
