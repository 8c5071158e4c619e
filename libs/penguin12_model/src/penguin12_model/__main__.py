"""``python -m penguin12_model detect|eval ...`` (see :mod:`penguin12_model.cli`)."""

import sys

from penguin12_model.cli import main

sys.exit(main())
