"""Hyper-parameter and architecture search on Optuna, behind ``hydra/sweeper=optuna``.

The Hydra plugin (``hydra_plugins/mbv3_optuna_sweeper``) is a thin shell around
:class:`~mbv3_lightning.sweeps.search.sweeper.OptunaSearch`. A study lives in a storage in
its sweep folder (or a database URL), so rerunning the command continues it and several
processes share it; each trial is one multirun cell (``status.json``, ``metrics.json``) whose
folder is named after the trial's number. ``docs/search.md`` is the user's guide.
"""

# The Hydra plugin class `hydra/sweeper=optuna` names (conf/hydra/sweeper/optuna.yaml); a job
# whose `hydra.sweeper._target_` is this one is a trial of a study.
SWEEPER_TARGET = "hydra_plugins.mbv3_optuna_sweeper.optuna_sweeper.OptunaSweeper"
# In a search's sweep folder: which study it holds, and where it is kept.
SEARCH_FILE = "search.json"
