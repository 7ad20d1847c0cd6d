"""Every module ships DOCUMENTATION, EXAMPLES and RETURN that parse, and its examples use FQCNs.

ansible-test's validate-modules checks the option docs against the argument spec; it does not
require RETURN or FQCN examples for collections, which our users (and the style guide) rely on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

MODULES = sorted((Path(__file__).resolve().parents[2] / "plugins" / "modules").glob("*.py"))


def _module_strings(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                found[node.targets[0].id] = node.value.value
    return found


def test_there_are_modules_to_check():
    assert MODULES, "plugins/modules holds no module"


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_module_documents_itself(path):
    strings = _module_strings(path)
    for name in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
        assert name in strings, f"{path.name} has no {name}"
    doc = yaml.safe_load(strings["DOCUMENTATION"])
    assert doc["module"] == path.stem
    assert doc.get("short_description")
    assert isinstance(yaml.safe_load(strings["RETURN"]), dict), f"{path.name}: RETURN is not a mapping"
    examples = yaml.safe_load(strings["EXAMPLES"])
    assert isinstance(examples, list) and examples, f"{path.name}: EXAMPLES is not a list of tasks"
    fqcn = f"edgeml.greengrass.{path.stem}"
    assert any(fqcn in task for task in examples if isinstance(task, dict)), f"{path.name}: no example uses {fqcn}"
