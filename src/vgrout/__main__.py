"""`python -m vgrout` = the `vgrout` command."""

import sys

from vgrout.cli import main

sys.exit(main())
