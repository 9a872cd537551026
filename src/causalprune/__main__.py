"""``python -m causalprune`` (also under ``torchrun``) is the ``causal-prune`` command."""

import sys

from .cli import main

sys.exit(main())
