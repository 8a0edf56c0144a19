"""mbv3-lightning: fine-tune and compare efficient image classifiers with Lightning + Hydra."""

__version__ = "0.1.0"
