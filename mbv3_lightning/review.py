"""`python -m mbv3_lightning.review`: the command lives in mbv3_lightning/cli/review.py.

This module only keeps the command's short path, like the other commands.
"""

from mbv3_lightning.cli.review import main

if __name__ == "__main__":
    main()
