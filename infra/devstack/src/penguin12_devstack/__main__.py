import sys

from penguin12_devstack.stack import main

sys.exit(main())
