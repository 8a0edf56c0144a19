"""`python -m mbv3_lightning.app`: the command lives in mbv3_lightning/cli/app.py.

This module only keeps the documented command working.
"""

from mbv3_lightning.cli.app import main

if __name__ == "__main__":
    main()
