"""`python -m pipeline.cli`: the omnistitch command."""

import sys

from pipeline.cli import main

sys.exit(main())
