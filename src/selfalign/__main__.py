"""``python -m selfalign``: the ``selfalign`` command (what ``accelerate launch -m`` runs)."""

import sys

from .cli import main

sys.exit(main())
