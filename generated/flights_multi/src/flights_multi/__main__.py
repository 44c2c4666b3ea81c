"""``python -m <package>`` entry point (template-owned)."""

import sys

from .cli import main

sys.exit(main())
