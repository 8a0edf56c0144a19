"""`python -m mbv3_lightning [overrides]`: the command lives in mbv3_lightning/cli/train.py.

This module only keeps the documented command working.
"""

from mbv3_lightning.cli.train import main

if __name__ == "__main__":
    main()
