"""Weights & Biases, in one place: whether it runs online (:mod:`.mode`), the Lightning logger
and the run's identity across resumes (:mod:`.logger`), the run's config (:mod:`.run_config`)
and what a scored run logs once (:mod:`.results`). Training, evaluation and the sweep report
all go through here."""
