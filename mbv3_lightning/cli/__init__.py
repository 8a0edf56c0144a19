"""One thin Hydra entry per command: parse the config, call the layers below, print."""
