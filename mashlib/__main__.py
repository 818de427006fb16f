"""``python -m mashlib run NOTEBOOK WORKFLOW ...`` / ``python -m mashlib demo``: see :mod:`mashlib.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
