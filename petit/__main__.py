"""`python -m petit`: the same as bin/petit, without the launcher's .venv preference."""

import sys

from petit.cli.main import main

sys.exit(main())
