import sys

from space.cli import main

sys.exit(main())
