"""``python -m edgemigrate`` runs the CLI."""

from __future__ import annotations

import sys

from edgemigrate.cli import main

sys.exit(main())
