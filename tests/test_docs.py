"""Every shell command shown in README.md and docs/*.md still works, and the README's links
resolve (``mkdocs build --strict`` checks the links of the pages in docs/).

What is a command: each line of a ```` ```bash ```` block, with ``\\`` continuations joined,
comment lines skipped and a trailing ``# comment`` removed; a line of several commands
(``a && b``) is one command per part. HTML comments on the lines right above a block steer
the test:

- ``<!-- docs-test: skip <reason> -->``: the block is not run end to end (it needs a GPU, a
  Kaggle download, a cluster, a server that keeps running, ...). Its ``mbv3`` lines are still
  composed by the default suite: composing needs none of those.
- ``<!-- docs-test: refused -->``: each command is shown because it fails; it must be refused
  (the composed config has a problem; run, it exits non-zero without a traceback and makes no
  run folder).

Placeholders stand for files of a finished run, substituted before a command is checked:

==========================================================  =====================================
shown                                                       stands for
==========================================================  =====================================
``outputs/<date>/<time>``, ``<run>``                        a finished training run's folder
``<ckpt>``                                                  its ``checkpoints/best.ckpt``
``outputs/multirun/<date>/<time>``, ``<sweep dir>``         a finished sweep's folder
``outputs/export/<date>/<time>``                            an export of the run (its ``.onnx``)
``runs/weights/best.pth``, ``runs/class_indices.json``      the run saved as the car-colour
                                                            recipe saves a model
``/data/<name>``, ``/path/to/photos`` (slow suite)          a generated image folder with
                                                            train/, val/ and test/ of the run's
                                                            three classes
==========================================================  =====================================

**Default suite** (seconds, in this process): every ``mbv3 <command>`` and ``python -m
mbv3_lightning[.cli.<command>]`` line is composed with its overrides and checked as the command
checks it before running (``check_overrides``, ``check_config``; every cell of a ``-m`` grid),
with the placeholders pointing at ``conftest.trained_checkpoint``'s run; ``mbv3 app`` loads
its model as the command does before starting the server. For every other line the program
must exist (a module, a script of the repository, an installed executable). A failure names
the page and the line.

**Slow suite** (``pytest -m slow tests/test_docs.py``): each block runs end to end, its
commands in order, in a fresh working folder (holding ``data/fruits360-mini`` and a few
``photos/``, with ``MBV3_DATA_DIR`` there and W&B offline), with the placeholders pointing at a
run, a sweep and an export made first by the documented commands themselves. ``pip`` lines are
not run: the suite runs in the environment they made. A command line shown on several pages
runs once. To keep a command short on a CPU,
overrides are appended, and as the last word on a key they win over the page's own values:

- ``mbv3 train`` / ``python -m mbv3_lightning``: one epoch of at most two batches of training,
  validation and test (``trainer.max_epochs=1 ++trainer.limit_*_batches=2``), no progress bar;
  an Optuna search runs 2 trials;
- ``mbv3 evaluate``: two test batches and a short timing; ``mbv3 profile``: two timed runs;
  ``mbv3 export``: two timed runs per runtime and 8 calibration images.

Images stay tiny (the generated folders hold 32-px photos; the demo's are 100 px), so a
command that trains takes seconds; the whole slow suite takes minutes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, make_image_folder, write_image, write_recipe_files

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(\S+)\s*(.*?)\s*-->\s*$")
COMMENT = re.compile(r"^\s*<!--.*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
SEPARATORS = ("&&", "||", ";", "|")
# Programs that are never run end to end, and why.
NOT_RUN = {"pip": "pip installs packages: the tests run in the environment it made"}
SHELL_BUILTINS = {".", "source", "export", "cd"}
# Command paths that no longer exist; the pages must not show them.
RETIRED = re.compile(
    r"python -m mbv3_lightning\.(predict|evaluate|export|profile|report|review|app)\b"
    r"|mbv3_lightning\.data\.check\b|\bmbv3-train\b"
)


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    language: str
    lines: tuple[tuple[int, str], ...]  # (line number, text), dedented
    skip: str | None = None
    refused: bool = False

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Command:
    """One command of a bash block, as a user would type it."""

    block: Block
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.block.page}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"

    @property
    def words(self) -> list[str]:
        words = shlex.split(self.text)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            words = words[1:]  # an environment assignment before the program
        return words


def read_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with the docs-test markers above each."""
    lines = path.read_text().splitlines()
    blocks, number = [], 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if not opening:
            number += 1
            continue
        indent, language, fence_line = opening.group(1), opening.group(2), number + 1
        skip, refused = None, False
        above = number - 1
        while above >= 0 and COMMENT.match(lines[above]):
            marker = MARKER.match(lines[above])
            if marker and marker.group(1) == "skip":
                skip = marker.group(2) or "no reason given"
                assert marker.group(2), f"{path.name}:{above + 1}: a skip needs its reason"
            elif marker and marker.group(1) == "refused":
                refused = True
            elif marker:
                raise AssertionError(f"{path.name}:{above + 1}: unknown marker {lines[above]!r}")
            above -= 1
        body, number = [], number + 1
        while number < len(lines) and not FENCE.match(lines[number]):
            body.append((number + 1, lines[number].removeprefix(indent)))
            number += 1
        relative = str(path.relative_to(REPO_ROOT))
        blocks.append(Block(relative, fence_line, language, tuple(body), skip, refused))
        number += 1
    return blocks


def _strip_comment(text: str) -> str:
    """``text`` without a trailing ``# comment`` (a ``#`` inside quotes or a word stays)."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip()
    return text.rstrip()


def _split_commands(text: str) -> list[str]:
    """``a && b || c; d`` -> its commands (separators inside quotes or ``$(...)`` stay)."""
    parts, current, quote, depth, i = [], "", None, 0, 0
    while i < len(text):
        char = text[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif text.startswith("$(", i):
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth == 0:
            separator = next((s for s in SEPARATORS if text.startswith(s, i)), None)
            if separator:
                parts.append(current.strip())
                current, i = "", i + len(separator)
                continue
        current += char
        i += 1
    parts.append(current.strip())
    return [p for p in parts if p]


def block_commands(block: Block) -> list[Command]:
    commands, pending, first = [], "", None
    for number, raw in block.lines:
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        first = first if pending else number
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        text = _strip_comment(pending + line)
        pending = ""
        commands += [Command(block, first, part) for part in _split_commands(text)]
    assert not pending, f"{block.where}: a continuation runs past the end of the block"
    return commands


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in read_blocks(page)]


BLOCKS = all_blocks()
BASH = [b for b in BLOCKS if b.language == "bash"]
COMMANDS = [c for b in BASH for c in block_commands(b)]


# --- what a command is ---------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """An mbv3 command: its name in ``mbv3_lightning.cli.main.COMMANDS`` and its arguments."""

    name: str | None  # None: `mbv3 --help`
    args: list[str]


def mbv3_invocation(words: Sequence[str]) -> Invocation | None:
    """``mbv3 <name> ...``, ``python -m mbv3_lightning ...`` (train) or ``python -m
    mbv3_lightning.cli.<name> ...``; None for any other program."""
    from mbv3_lightning.cli.main import COMMANDS as CLI

    if words and words[0] == "mbv3":
        if len(words) == 1 or words[1] in ("-h", "--help"):
            return Invocation(None, list(words[1:]))
        return Invocation(words[1], list(words[2:]))
    if len(words) >= 3 and words[0] in ("python", "python3") and words[1] == "-m":
        if words[2] == "mbv3_lightning":
            return Invocation("train", list(words[3:]))
        for name, command in CLI.items():
            if words[2] == command.module:
                return Invocation(name, list(words[3:]))
    return None


def program_problem(words: Sequence[str]) -> str | None:
    """Why the program of a command line does not exist here, or None."""
    from mbv3_lightning.cli.main import available

    program = words[0]
    if program == "mbv3":
        name = words[1] if len(words) > 1 else "--help"
        return None if name in ("-h", "--help") or name in available() else f"no `mbv3 {name}`"
    if program in ("python", "python3") and len(words) > 1:
        if words[1] == "-m":
            found = importlib.util.find_spec(words[2]) is not None
            return None if found else f"no module {words[2]}"
        return None  # python -c ..., python script.py
    if program == "bash":
        return None if (REPO_ROOT / words[1]).is_file() else f"no script {words[1]}"
    if program in SHELL_BUILTINS or shutil.which(program):
        return None
    return f"no program {program!r} on the PATH"


# --- placeholders --------------------------------------------------------------------------


@dataclass(frozen=True)
class StandIns:
    """The real files the placeholders of the pages stand for."""

    run: Path  # a finished training run
    sweep: Path  # a finished sweep
    export: Path  # a folder holding the run's mobilenet_v3_small.onnx
    recipe_weights: Path  # the run's network as a plain state dict
    recipe_classes: Path  # its class file
    folder: Callable[[str], Path] | None = None  # /data/<name> -> a generated image folder

    def substitute(self, word: str) -> str:
        pairs = [
            ("outputs/multirun/<date>/<time>", self.sweep),
            ("<sweep dir>", self.sweep),
            ("outputs/export/<date>/<time>", self.export),
            ("outputs/<date>/<time>", self.run),
            ("<run>", self.run),
            ("<ckpt>", self.run / "checkpoints" / "best.ckpt"),
            ("runs/weights/best.pth", self.recipe_weights),
            ("runs/class_indices.json", self.recipe_classes),
        ]
        for shown, real in pairs:
            word = word.replace(shown, str(real))
        if self.folder is not None:
            word = re.sub(r"/data/([\w.-]+)", lambda m: str(self.folder(m.group(1))), word)
            word = word.replace("/path/to/photos", str(self.folder("photos")))
        return word


def substituted(command: Command, stand_ins: StandIns) -> list[str]:
    words = [stand_ins.substitute(w) for w in command.words]
    left = [w for w in words if re.search(r"<[\w ]+>", w)]
    assert not left, f"{command}: unknown placeholder in {left} (see tests/test_docs.py)"
    return words


def needs_stand_ins(command: Command) -> bool:
    return bool(re.search(r"<[\w ]+>|runs/weights|runs/class_indices", command.text))


# --- the default suite: every command composes ----------------------------------------------


def _help_flags(args: Sequence[str]) -> bool:
    return any(a in ("-h", "--help") for a in args)


def _without_cfg_flag(args: Sequence[str]) -> list[str]:
    """``--cfg job`` (print the config) composes the same config: drop the flag."""
    out, skip_next = [], False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg in ("--cfg", "-c"):
            skip_next = True
        elif not arg.startswith("--cfg="):
            out.append(arg)
    return out


def _multirun_problem(config_name: str, overrides: Sequence[str]) -> str | None:
    """Compose a ``-m`` command as Hydra's multirun does and run its checks on every cell."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    from mbv3_lightning.cli.config import config_dir, register_resolvers
    from mbv3_lightning.cli.config_check import ConfigCheck

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            cfg = loader.load_configuration(config_name, list(overrides), RunMode.MULTIRUN)
            HydraConfig.instance().set_config(cfg)
            ConfigCheck().on_multirun_start(cfg)
    except (HydraException, OmegaConfBaseException) as error:
        return str(error)
    except SystemExit as stop:
        return str(stop)
    finally:
        GlobalHydra.instance().clear()
    return None


# Commands shown on several pages are composed once.
_COMPOSED: dict[tuple[str | None, tuple[str, ...]], str | None] = {}


def compose_problem(invocation: Invocation, capsys) -> str | None:
    """What the command would refuse before running, or None: it composes and checks clean."""
    key = (invocation.name, tuple(invocation.args))
    if key not in _COMPOSED:
        _COMPOSED[key] = _compose_problem(invocation, capsys)
    return _COMPOSED[key]


def _compose_problem(invocation: Invocation, capsys) -> str | None:
    from mbv3_lightning.cli.config import compose_config
    from mbv3_lightning.cli.config_check import config_errors
    from mbv3_lightning.cli.main import COMMANDS as CLI
    from mbv3_lightning.cli.main import check_overrides, main

    if invocation.name is None or _help_flags(invocation.args):
        with pytest.raises(SystemExit) as stop:
            main([invocation.name, *invocation.args] if invocation.name else ["--help"])
        out = capsys.readouterr().out
        return None if stop.value.code == 0 and "usage: mbv3" in out else f"exit {stop.value.code}"
    config = CLI[invocation.name].config
    args = _without_cfg_flag(invocation.args)
    if invocation.name == "report":
        return _report_problem(args)
    if invocation.name == "app":
        return _app_problem(args)
    assert config is not None, f"no check for `mbv3 {invocation.name}` in tests/test_docs.py"
    if any(a in ("-m", "--multirun") for a in args):
        return _multirun_problem(config, [a for a in args if a not in ("-m", "--multirun")])
    problem = check_overrides(invocation.name, args)
    if problem:
        return problem
    errors = config_errors(compose_config(config, args, hydra_runtime=True))
    return "\n".join(errors) or None


def _report_problem(args: Sequence[str]) -> str | None:
    """``mbv3 report <sweep dir> [report.key=value ...]``: one folder, known keys."""
    from omegaconf import OmegaConf

    from mbv3_lightning.resources import resource_path

    positional = [a for a in args if "=" not in a]
    if len(positional) != 1:
        return f"one sweep folder expected, got {positional}"
    cfg = OmegaConf.load(resource_path("conf") / "report.yaml")
    OmegaConf.set_struct(cfg, True)
    try:
        OmegaConf.merge(cfg, OmegaConf.from_dotlist([a for a in args if "=" in a]))
    except Exception as error:
        return str(error)
    return None


def _app_problem(args: Sequence[str]) -> str | None:
    """``mbv3 app ...``: the arguments parse and the model loads, as before the server starts."""
    from mbv3_lightning.deploy.page import check_model, parse_arguments

    try:
        check_model(parse_arguments(list(args)))
    except SystemExit as stop:
        return str(stop)
    return None


@pytest.fixture(scope="session")
def fixture_stand_ins(
    trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> StandIns:
    """The placeholders of the default suite: the session's trained run (sweep and export are
    only composed, so any folder stands for them)."""
    folder = tmp_path_factory.mktemp("docs_compose")
    weights, classes = write_recipe_files(trained_checkpoint, folder / "recipe")
    run = trained_checkpoint.parent.parent
    return StandIns(run, folder / "sweep", folder / "export", weights, classes)


def test_the_pages_show_commands():
    assert len(BASH) > 30 and len(COMMANDS) > 60, (len(BASH), len(COMMANDS))
    assert {c.block.page for c in COMMANDS} >= {"README.md", "docs/reliability.md"}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where)
def test_every_documented_command_exists_and_composes(command: Command, request, capsys):
    """The program exists; an mbv3 command composes and passes its checks (a `refused` one
    fails them), with placeholders standing for a real run's files."""
    problem = program_problem(command.words)
    assert problem is None, f"{command}: {problem}"
    if mbv3_invocation(command.words) is None:
        return
    words = command.words
    if needs_stand_ins(command):
        stand_ins = request.getfixturevalue("fixture_stand_ins")
        words = substituted(command, stand_ins)
        run = str(stand_ins.run)
        for word in words:
            value = word.split("=", 1)[-1]
            if value.startswith(run):
                assert Path(value).exists(), f"{command}: a run has no {value[len(run) :]}"
    invocation = mbv3_invocation(words)
    assert invocation is not None
    problem = compose_problem(invocation, capsys)
    if command.block.refused:
        assert problem, f"{command}: shown as refused, but it composes and checks clean"
    else:
        assert problem is None, f"{command}: refused when composed:\n{problem}"


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.language == "python"], ids=lambda b: b.where
)
def test_python_examples_are_valid_python(block: Block):
    compile("\n".join(text for _, text in block.lines), block.where, "exec")


def test_the_pages_name_no_retired_command():
    # The changelog is where a removed command is named, on purpose.
    for page in (p for p in PAGES if p.name != "changelog.md"):
        for number, line in enumerate(page.read_text().splitlines(), 1):
            assert not RETIRED.search(line), f"{page.name}:{number}: {line.strip()}"


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc (and GitHub) give a heading."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[-\s]+", "-", text).strip("-")


def _anchors(page: Path) -> set[str]:
    lines = page.read_text().splitlines()
    headings = [line.lstrip("#").strip() for line in lines if re.match(r"#{1,6} ", line)]
    return {_slug(h) for h in headings}


def test_the_readmes_links_and_images_resolve():
    readme = REPO_ROOT / "README.md"
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", readme.read_text())
    assert targets
    for target in targets:
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        file = (readme.parent / path) if path else readme
        assert file.exists(), f"README.md links to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(file), f"README.md links to {target}: no such heading"


def test_the_slug_matches_mkdocs_for_the_headings_linked_here():
    assert _slug("Training defaults, and why") == "training-defaults-and-why"
    assert _slug("One command: `mbv3`") == "one-command-mbv3"
    assert _slug("Metrics and W&B") == "metrics-and-wb"


# --- the slow suite: every block runs --------------------------------------------------------

TRAIN_BOUNDS = [
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=2",
    "++trainer.limit_val_batches=2",
    "++trainer.limit_test_batches=2",
    "++callbacks.progress_bar=null",
]
BOUNDS = {
    "train": TRAIN_BOUNDS,
    "evaluate": ["++trainer.limit_test_batches=2", "timing.repeats=2", "timing.warmup=1"],
    "profile": ["profile.runs=2", "profile.warmup=1"],
    "export": ["latency_runs=2", "calibration_size=8"],
}


def bounded(invocation: Invocation) -> list[str]:
    """The command's arguments plus the overrides that keep it short on a CPU."""
    if invocation.name is None or _help_flags(invocation.args):
        return invocation.args
    extra = list(BOUNDS.get(invocation.name, []))
    if invocation.name == "train" and any("optuna" in a for a in invocation.args):
        extra.append("hydra.sweeper.n_trials=2")
    return [*invocation.args, *extra]


def argv(words: list[str]) -> list[str]:
    """The process to start for a command line (the test's own Python for python and mbv3)."""
    invocation = mbv3_invocation(words)
    if invocation is not None:
        name = [invocation.name] if invocation.name else []
        return [sys.executable, "-m", "mbv3_lightning.cli.main", *name, *bounded(invocation)]
    if words[0] in ("python", "python3"):
        return [sys.executable, *words[1:]]
    return words


def _environment(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "WANDB_API_KEY")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", MBV3_DATA_DIR=str(workdir / "data"))
    return env


# Command lines that already ran to success in this session (a command shown on several
# pages runs once).
_RAN: set[tuple[str, ...]] = set()


def run_command(words: list[str], workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv(words),
        cwd=workdir,
        env=_environment(workdir),
        capture_output=True,
        text=True,
        timeout=1800,
    )


def _workdir(base: Path) -> Path:
    """A working folder as a user's: the demo photos under data/, a few photos/."""
    base.mkdir(parents=True)
    (base / "data").mkdir()
    (base / "data" / "fruits360-mini").symlink_to(REPO_ROOT / "data" / "fruits360-mini")
    for i, colour in enumerate([(220, 40, 40), (40, 200, 60), (50, 70, 230)]):
        write_image(base / "photos" / f"photo{i}.jpg", colour, size=64, seed=i)
    return base


def _must_succeed(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode == 0, f"{what}: exit {result.returncode}\n{result.stderr[-4000:]}"


@pytest.fixture(scope="session")
def run_stand_ins(tmp_path_factory: pytest.TempPathFactory) -> StandIns:
    """A run, a sweep and an export made by the documented commands (bounded as above), and
    the generated folders that /data/<name> stands for."""
    base = tmp_path_factory.mktemp("docs_run")
    folders: dict[str, Path] = {}

    def folder(name: str) -> Path:
        if name not in folders:
            splits = {"train": 10, "val": 4, "test": 4}
            folders[name] = make_image_folder(base / "data" / name, splits=splits)
        return folders[name]

    work = _workdir(base / "work")
    steps = {
        "run": ["mbv3", "train", "dataset=image_folder", f"dataset.root={folder('my_photos')}"],
        "sweep": ["mbv3", "train", "-m", "experiment=demo_grid"],
    }
    _must_succeed(run_command([*steps["run"], f"hydra.run.dir={base / 'run'}"], work), "run")
    _must_succeed(
        run_command([*steps["sweep"], f"hydra.sweep.dir={base / 'sweep'}"], work), "sweep"
    )
    _RAN.add(tuple(steps["sweep"]))  # the README's sweep: it need not run again
    export = ["mbv3", "export", f"ckpt_path={base / 'run/checkpoints/best.ckpt'}"]
    _must_succeed(run_command([*export, f"hydra.run.dir={base / 'export'}"], work), "export")
    weights, classes = write_recipe_files(base / "run/checkpoints/best.ckpt", base / "recipe")
    return StandIns(base / "run", base / "sweep", base / "export", weights, classes, folder)


SLOW_BLOCKS = [b for b in BASH if block_commands(b)]


@pytest.mark.slow
@pytest.mark.parametrize("block", SLOW_BLOCKS, ids=lambda b: b.where)
def test_every_documented_block_runs(block: Block, request, tmp_path):
    """Each command of the block, in order, in one working folder; see the module docstring."""
    if block.skip:
        pytest.skip(block.skip)
    commands = block_commands(block)
    stand_ins = request.getfixturevalue("run_stand_ins")
    workdir = _workdir(tmp_path / "work")
    ran = 0
    for command in commands:
        if command.words[0] in NOT_RUN:
            continue
        words = substituted(command, stand_ins)
        ran += 1
        if tuple(words) in _RAN:
            continue
        result = run_command(words, workdir)
        if block.refused:
            assert result.returncode != 0, f"{command}: shown as refused, but it ran"
            assert "Traceback" not in result.stderr, f"{command}:\n{result.stderr[-4000:]}"
            assert not (workdir / "outputs").exists(), f"{command}: made a run folder"
        else:
            _must_succeed(result, str(command))
            _RAN.add(tuple(words))
    if not ran:
        pytest.skip(f"only {', '.join(sorted(NOT_RUN))} lines: {NOT_RUN['pip']}")
