import sys

from thinpool.cli import main

sys.exit(main())
