#!/usr/bin/env python3
"""rmail's command line: `python run.py --help`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rmail.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
