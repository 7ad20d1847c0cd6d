"""pytest fixture `edge_devices`: boot simulated edge devices for one test, always torn down after it.

    def test_something(edge_devices):
        fleet = edge_devices(count=2)
        fleet.run("edge-01", "hostname")          # real SSH as `edge`
        subprocess.run(["ansible-playbook", "-i", fleet.inventory, ...])

Enabled by `pytest_plugins = ["testbed.pytest_plugin"]` in tests/conftest.py.
"""

from __future__ import annotations

import itertools
import os
import re

import pytest

from testbed.edge_devices import EdgeDeviceBed, build_image

_counter = itertools.count(1)


@pytest.fixture
def edge_devices(request):
    """Factory: `edge_devices(count=1, prefix="edge")` boots a uniquely named bed and returns it."""
    if os.geteuid() != 0:
        pytest.skip("simulated edge devices need root (overlay mounts, systemd-nspawn)")
    beds: list[EdgeDeviceBed] = []

    def boot(count: int = 1, prefix: str = "edge", **kwargs) -> EdgeDeviceBed:
        build_image()  # a no-op when the image is cached
        test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:24] or "test"
        name = f"pytest-{os.getpid()}-{next(_counter)}-{test}"
        # tied: if this pytest is killed, the next `up` anywhere reaps the bed
        bed = EdgeDeviceBed(name, count=count, prefix=prefix, tied_to_process=True, **kwargs)
        beds.append(bed)
        return bed.up()

    yield boot
    errors = []
    for bed in reversed(beds):
        try:
            bed.down()
        except Exception as exc:  # noqa: BLE001 - tear down every bed, then report
            errors.append(f"{bed.name}: {exc}")
    if errors:
        pytest.fail("tearing down simulated devices failed: " + "; ".join(errors))
