"""`python -m mbv3_lightning.profile`: the command lives in mbv3_lightning/cli/profile.py.

This module only keeps the documented command working.
"""

from mbv3_lightning.cli.profile import main

if __name__ == "__main__":
    main()
