"""Run pvcontrol with ``python -m pvcore.pvcontrol``."""

import sys

from pvcore.pvcontrol.cli import main

if __name__ == "__main__":
    sys.exit(main())
