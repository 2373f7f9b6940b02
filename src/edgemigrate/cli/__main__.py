"""``python -m edgemigrate.cli`` runs the CLI, as ``python -m edgemigrate`` and the ``edgemigrate`` script do."""

from __future__ import annotations

import sys

from edgemigrate.cli import main

sys.exit(main())
