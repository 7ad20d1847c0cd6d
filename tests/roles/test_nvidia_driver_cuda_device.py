"""roles/nvidia_driver_cuda on a real simulated device without a GPU: a clean no-op from the first run."""

from __future__ import annotations

import pytest

from tests.roles.playbook_json import run_playbook

pytestmark = [pytest.mark.devices]

PLAYBOOK = """
- name: NVIDIA driver role on the devices
  hosts: edge_devices
  gather_facts: true
  roles:
    - role: edgeml.greengrass.nvidia_driver_cuda
"""


def test_first_run_on_a_cpu_device_changes_nothing_and_says_why(edge_devices, tmp_path):
    fleet = edge_devices(count=1)
    host = next(iter(fleet.hosts))
    playbook = tmp_path / "nvidia.yml"
    playbook.write_text(PLAYBOOK)
    run = run_playbook(playbook, fleet.inventory)
    assert run.returncode == 0, run.describe()
    assert run.stats(host)["changed"] == 0
    message = run.results("Preflight | Say why nothing is installed on this host")[host]["msg"]
    assert message.startswith(f"No NVIDIA GPU on {host}")
    assert run.results("Install the driver and the CUDA toolkit")[host].get("skipped") is True
    required = run_playbook(playbook, fleet.inventory, extra_vars={"nvidia_driver_cuda_require_gpu": True})
    assert required.returncode != 0
    assert any(
        f"nvidia_driver_cuda_require_gpu is true but {host} has no NVIDIA GPU" in m for m in required.failure_messages()
    )
