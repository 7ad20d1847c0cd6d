"""Version requirements as the bed's ResolveComponentCandidates reads them (npm-style ranges, as the nucleus sends)."""

from __future__ import annotations

import pytest

from testbed.iot_data_plane.greengrass_data import satisfies


@pytest.mark.parametrize(
    "version, requirement, ok",
    [
        ("1.2.3", "1.2.3", True),
        ("1.2.3", "=1.2.3", True),
        ("1.2.4", "1.2.3", False),
        ("1.5.0", ">=1.0.0 <2.0.0", True),
        ("2.0.0", ">=1.0.0 <2.0.0", False),
        ("2.0.0-rc.1", "<2.0.0", True),
        ("2.0.0-rc.1", ">=2.0.0", False),
        ("1.9.9", "^1.2.0", True),
        ("2.0.0", "^1.2.0", False),
        ("0.3.5", "^0.3.1", True),
        ("0.4.0", "^0.3.1", False),
        ("1.2.9", "~1.2.0", True),
        ("1.3.0", "~1.2.0", False),
        ("1.2.7", "1.2.x", True),
        ("1.3.0", "1.2", False),
        ("9.9.9", "*", True),
        ("3.0.0", "<1.0.0 || >=3.0.0", True),
        ("2.0.0", "<1.0.0 || >=3.0.0", False),
        ("1.0.1", ">1.0.0", True),
        ("1.0.0", "<=1.0.0", True),
    ],
)
def test_npm_style_ranges(version, requirement, ok):
    assert satisfies(version, requirement) is ok


@pytest.mark.parametrize("requirement", ["latest", ">=1.0.0 <> 2", "1.2.3.4"])
def test_unreadable_requirement_is_an_error_not_a_match(requirement):
    with pytest.raises(ValueError):
        satisfies("1.0.0", requirement)
