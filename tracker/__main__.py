"""``python -m tracker`` runs the ``tracker`` command (the same as the console script)."""

import sys

from tracker.cli import main

sys.exit(main())
