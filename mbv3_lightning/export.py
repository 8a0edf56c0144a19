"""`python -m mbv3_lightning.export`: the command lives in mbv3_lightning/cli/export.py.

This module only keeps the documented command working.
"""

from mbv3_lightning.cli.export import main

if __name__ == "__main__":
    main()
