"""``python -m donjon``: the ``donjon`` command, started as its console script starts it."""

import sys

from donjon.cli.entry import main

sys.exit(main())
