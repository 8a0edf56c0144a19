"""`python -m mbv3_lightning.predict`: the command lives in mbv3_lightning/cli/predict.py.

This module only keeps the documented command working.
"""

from mbv3_lightning.cli.predict import main

if __name__ == "__main__":
    main()
