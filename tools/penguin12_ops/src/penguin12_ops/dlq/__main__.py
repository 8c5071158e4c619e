import sys

from penguin12_ops.dlq.cli import main

sys.exit(main())
