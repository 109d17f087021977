"""Run pvcontrol with ``python -m pvcontrol``."""

import sys

from pvcontrol.cli import main

if __name__ == "__main__":
    sys.exit(main())
