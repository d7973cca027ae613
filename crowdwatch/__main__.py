"""``python -m crowdwatch`` is the ``crowdwatch`` command."""

import sys

from crowdwatch.cli import main

sys.exit(main())
