import sys

from penguin12_client.cli import main

sys.exit(main())
