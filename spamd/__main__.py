"""`python -m spamd`: the `spamd` command."""

import sys

from spamd.cli import main

sys.exit(main())
