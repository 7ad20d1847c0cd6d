"""Variants of a good configuration document, for the tests of the checks that guard a core's configuration file
(greengrass_v1_core's config.json, greengrass_v2_nucleus's config.yaml)."""

from __future__ import annotations

import copy

REMOVED = object()


def edited(doc: dict, keys: tuple[str, ...], value=REMOVED) -> dict:
    """A deep copy of ``doc`` with the entry at ``keys`` (one key per level) set to ``value``, or removed when no
    value is given."""
    changed = copy.deepcopy(doc)
    *parents, last = keys
    node = changed
    for key in parents:
        node = node[key]
    if value is REMOVED:
        del node[last]
    else:
        node[last] = value
    return changed
