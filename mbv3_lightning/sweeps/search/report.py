"""The report's search section: the study's best trial (or Pareto front), every trial with its
state, and Optuna's own figures (optimisation history, parameter importance, intermediate
values, Pareto front) saved as PNG and PDF like the report's other figures.

The study is read from the storage its sweep folder names in ``search.json``. A storage file
in the folder is opened read-only; a database URL is opened only when the user passes it
(``report.storage=<URL>``): the folder is data, and a URL in it could point anywhere.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import optuna
from optuna.trial import FrozenTrial, TrialState

from mbv3_lightning.sweeps.figures import save_figure
from mbv3_lightning.sweeps.search import SEARCH_FILE
from mbv3_lightning.sweeps.search.objectives import label
from mbv3_lightning.sweeps.search.storage import StorageSpec, open_storage
from mbv3_lightning.sweeps.search.study import ERROR, RUN_DIR, trial_command

log = logging.getLogger(__name__)

NA = "n/a"


def _markdown_table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]


def _open_study(
    sweep_dir: Path, info: dict[str, Any], storage_url: str | None
) -> tuple[optuna.Study | None, str]:
    """The study, or ``None`` and why it cannot be read."""
    kind = (info.get("storage") or {}).get("kind")
    location = str((info.get("storage") or {}).get("location", ""))
    if storage_url:
        spec = StorageSpec("url", storage_url)
    elif kind in ("sqlite", "journal"):
        # the file's name only, inside this folder (the folder may have been moved)
        spec = StorageSpec(kind, str(sweep_dir / Path(location).name))
    else:
        return None, (
            f"The study lives in a database ({location}); pass `report.storage=<its URL>` to "
            "draw it here."
        )
    try:
        storage = open_storage(spec, create=False)
        return optuna.load_study(study_name=str(info["study_name"]), storage=storage), ""
    except Exception as err:  # a missing file, an unreachable database, another study
        return None, f"The study could not be read from {spec.display}: {err}"


def _state(trial: FrozenTrial, monitor: str) -> str:
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        last = max(trial.intermediate_values)
        value = trial.intermediate_values[last]
        return f"pruned after epoch {last + 1} ({monitor} {value:.4f})"
    return {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }[trial.state]


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _value(trial: FrozenTrial, i: int) -> str:
    # A pruned trial's value is Optuna's last reported one, not the objective: the state says it.
    if trial.state != TrialState.COMPLETE or trial.values is None or len(trial.values) <= i:
        return NA
    value = trial.values[i]
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.0f}"


def search_section(
    sweep_dir: Path, out_dir: Path, storage_url: str | None = None
) -> tuple[list[str], dict[str, Path]]:
    """Markdown lines and figures for a search's sweep folder; nothing for a grid sweep."""
    info_file = sweep_dir / SEARCH_FILE
    if not info_file.is_file():
        return [], {}
    info = json.loads(info_file.read_text())
    objectives: list[str] = list(info.get("objectives") or [])
    monitor = str(info.get("monitor") or "value")
    study, why = _open_study(sweep_dir, info, storage_url)
    if study is None:
        return ["", "## Hyper-parameter search (Optuna)", "", why], {}
    directions = [d.name.lower() for d in study.directions]
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    lines = [
        "",
        f"## Hyper-parameter search (Optuna): {len(trials)} trials",
        "",
        f"Study `{study.study_name}` in `{info_file.parent.name}/`; "
        + ", ".join(f"{label(o)} ({d})" for o, d in zip(objectives, directions, strict=False))
        + ".",
        "",
        f"{len(trials)} trials: {counts[TrialState.COMPLETE]} complete, "
        f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed"
        + (
            f", {counts[TrialState.RUNNING] + counts[TrialState.WAITING]} not finished"
            if counts[TrialState.RUNNING] + counts[TrialState.WAITING]
            else ""
        )
        + ".",
    ]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    header = ["trial", *[label(o) for o in objectives], "run it alone"]
    if complete and len(directions) == 1:
        best = study.best_trial
        lines += [
            "",
            f"Best {objectives[0]}: **{best.value:.4f}** (trial {best.number}). Run it alone:",
            "",
            f"    {trial_command(best)}",
        ]
    elif complete:
        front = sorted(study.best_trials, key=lambda t: t.values[1])
        on_front = {t.number for t in front}
        dominated = [t for t in complete if t.number not in on_front]

        def row(t: FrozenTrial) -> list[str]:
            values = [_value(t, i) for i in range(len(objectives))]
            return [str(t.number), *values, f"`{trial_command(t)}`"]

        lines += [
            "",
            f"### Pareto front: {len(front)} of {len(trials)} trials",
            "",
            "No other trial is better on one objective without being worse on another.",
            "",
            *_markdown_table(header, [row(t) for t in front]),
            "",
            f"### Dominated trials: {len(dominated)}",
            "",
            *_markdown_table(header, [row(t) for t in dominated]),
        ]
    lines += ["", "### Every trial", ""]
    rows = [
        [
            str(t.number),
            _state(t, monitor),
            *[_value(t, i) for i in range(len(objectives))],
            " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
            ),
            str(t.user_attrs.get(RUN_DIR, "")),
            str(t.user_attrs.get(ERROR, ""))[:120],
        ]
        for t in trials
    ]
    lines += _markdown_table(
        ["trial", "state", *[label(o) for o in objectives], "parameters", "folder", "error"], rows
    )
    figures = _figures(study, objectives, monitor, out_dir)
    for name, path in figures.items():
        lines += ["", f"![{name}]({path.name})"]
    return lines, figures


def _relabel(axes: Any, legend: dict[str, str], **labels: str) -> None:
    """Optuna's generic legend entries and axis labels in the study's own words."""
    if axes.get_legend() is not None:
        for text in axes.get_legend().get_texts():
            text.set_text(legend.get(text.get_text(), text.get_text()))
    axes.set(**labels)


def _figures(
    study: optuna.Study, objectives: list[str], monitor: str, out_dir: Path
) -> dict[str, Path]:
    """Optuna's own plots of the study (each skipped, with a log line, when the study has too
    few finished trials for it)."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as oplt

    single = len(study.directions) == 1
    names = [label(o) for o in objectives]
    objective_legend = {f"Objective Value {i}": name for i, name in enumerate(names)}
    relabel: dict[str, Callable[[Any], None]] = {
        "search_importance": lambda ax: _relabel(ax, objective_legend),
        "search_intermediate": lambda ax: _relabel(
            ax, {}, xlabel="epoch (counted from 0, as the pruner sees it)", ylabel=monitor
        ),
        "search_pareto": lambda ax: _relabel(
            ax, {"Best Trial": "on the Pareto front", "Trial": "dominated"}, title="Pareto front"
        ),
    }
    first: dict[str, Any] = {} if single else {"target": lambda t: t.values[0]}
    plots: dict[str, Callable[[], Any]] = {
        "search_history": lambda: oplt.plot_optimization_history(
            study, target_name=names[0], **first
        ),
        "search_importance": lambda: (
            oplt.plot_param_importances(study, target_name=names[0])
            if single
            else oplt.plot_param_importances(study)
        ),
    }
    if single:
        plots["search_intermediate"] = lambda: oplt.plot_intermediate_values(study)
    else:
        plots["search_pareto"] = lambda: oplt.plot_pareto_front(study, target_names=names)
    written: dict[str, Path] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, plot in plots.items():
        # Optuna's plots set their own style globally; rc_context puts the report's back.
        with matplotlib.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # the matplotlib backend's
            try:
                axes = plot()
            except (ValueError, RuntimeError) as err:  # e.g. importance of one finished trial
                log.info("No %s figure: %s", name, err)
                continue
            relabel.get(name, lambda ax: None)(axes)
            written[name] = save_figure(axes.figure, out_dir / f"{name}.png")
    return written
