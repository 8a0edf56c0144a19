"""`python -m mbv3_lightning.report`: the command lives in mbv3_lightning/cli/report.py.

This module only keeps the documented command working.
"""

from mbv3_lightning.cli.report import main

if __name__ == "__main__":
    main()
