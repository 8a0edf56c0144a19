"""`python -m mbv3_lightning.data.check`: the command lives in mbv3_lightning/cli/check.py.

This module only keeps the documented command working.
"""

from mbv3_lightning.cli.check import main

if __name__ == "__main__":
    main()
