"""mbv3-lightning's Optuna sweeper for Hydra (``hydra/sweeper=optuna``).

Hydra finds sweepers in the ``hydra_plugins`` namespace package; this one is a thin shell
around :mod:`mbv3_lightning.sweeps.search`. Its settings are ``conf/hydra/sweeper/optuna.yaml``.
"""
