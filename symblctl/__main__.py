"""``python -m symblctl``: the same as the ``symblctl`` console script."""

import sys

from symblctl.cli import main

sys.exit(main())
