"""Unit tests import the collection as Ansible does: ``ansible_collections.edgeml.greengrass...``.

``scripts/setup.sh`` links this checkout into ``.collections/ansible_collections/edgeml/greengrass``;
putting ``.collections`` on ``sys.path`` lets plain ``python -m pytest tests/unit`` import it beside
amazon.aws (the ``ansible`` package's collections in site-packages share the same namespace package).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO_ROOT / ".collections"
_LINK = COLLECTIONS / "ansible_collections" / "edgeml" / "greengrass"

if not _LINK.exists():
    # Same link as scripts/setup.sh makes, so a fresh clone's unit tests run without it.
    _LINK.parent.mkdir(parents=True, exist_ok=True)
    _LINK.symlink_to(REPO_ROOT)

if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
