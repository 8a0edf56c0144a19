"""Side-by-side benchmarks of mbv3-lightning: `python -m benchmarks.run` (see README)."""
