"""`python -m mbv3_lightning.evaluate`: the command lives in mbv3_lightning/cli/evaluate.py.

This module only keeps the documented command working.
"""

from mbv3_lightning.cli.evaluate import main

if __name__ == "__main__":
    main()
