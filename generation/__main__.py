"""`python -m generation --model DIR --prompt TEXT`: see generation/cli.py."""

import sys

from .cli import main

sys.exit(main())
