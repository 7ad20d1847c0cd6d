"""Each role states a default in two places: the value in defaults/main.yml (what the role uses) and the
`default` of its option in meta/argument_specs.yml (what ansible-doc and the docs show). Ansible does not compare
them, so they could drift apart unseen; these tests do.

- An option with a literal default has the same value in both places.
- An option whose default is computed (a template in defaults/main.yml) says how in the spec: as its default string
  (for example '<inventory_hostname>-group') or, for a typed option, in a "Defaults to ..." description.
- Every optional input of an entry point has a value in defaults/main.yml, and every variable there is documented
  in an entry point's spec.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = sorted(
    path.parents[1] for path in (Path(__file__).resolve().parents[2] / "roles").glob("*/meta/argument_specs.yml")
)


def _role_data(role: Path) -> tuple[dict, dict]:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    defaults_file = role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else None) or {}
    return specs, defaults


def _options(specs: dict):
    for entry_point, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            yield entry_point, name, option


def test_there_are_roles_to_check():
    assert len(ROLES) >= 8, ROLES


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.name)
def test_spec_defaults_match_the_role_defaults(role):
    specs, defaults = _role_data(role)
    problems = []
    for entry_point, name, option in _options(specs):
        if "default" not in option:
            if not option.get("required") and name not in defaults:
                problems.append(f"{entry_point}: {name} is optional but has no value in defaults/main.yml")
            continue
        if name not in defaults:
            problems.append(f"{entry_point}: {name} has a spec default but no value in defaults/main.yml")
            continue
        value = defaults[name]
        if isinstance(value, str) and "{{" in value:
            described = isinstance(option["default"], str) or "Defaults to" in str(option.get("description"))
            if not described:
                problems.append(f"{entry_point}: {name} is computed ({value!r}); its spec should say how")
        elif value != option["default"]:
            problems.append(
                f"{entry_point}: {name} is {value!r} in defaults/main.yml, {option['default']!r} in the spec"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.name)
def test_every_role_default_is_a_documented_input(role):
    specs, defaults = _role_data(role)
    documented = {name for _entry_point, name, _option in _options(specs)}
    undocumented = sorted(set(defaults) - documented)
    assert not undocumented, f"defaults/main.yml sets {undocumented}, which no entry point's spec documents"
