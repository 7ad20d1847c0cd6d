"""roles/nvidia_driver_cuda on a real simulated device without a GPU: a clean no-op from the first run."""

from __future__ import annotations

import re

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


NONFREE_PLAYBOOK = """
- name: Debian non-free sources from the role, on a device with a simulated GPU
  hosts: edge_devices
  gather_facts: true
  tasks:
    - name: Run the role's preflight
      ansible.builtin.include_role:
        name: edgeml.greengrass.nvidia_driver_cuda
        tasks_from: preflight.yml
        public: true
    - name: Enable the components the role enables
      ansible.builtin.include_role:
        name: edgeml.greengrass.nvidia_driver_cuda
        tasks_from: setup-debian-nonfree.yml
    - name: Report
      ansible.builtin.debug:
        msg:
          source: "{{ __nvidia_driver_cuda_effective_source }}"
          driver_packages: "{{ __nvidia_driver_cuda_driver_packages }}"
          toolkit_packages: "{{ __nvidia_driver_cuda_toolkit_packages }}"
          cuda_version: "{{ nvidia_driver_cuda_cuda_version }}"
          branch: "{{ __nvidia_driver_cuda_effective_driver_branch }}"
"""


def test_debian_nonfree_sources_resolve_the_driver_and_toolkit(edge_devices, tmp_path):
    """The rendered sources file, on a real Debian 12 device and mirror, offers exactly the packages,
    driver branch and CUDA version that vars/Debian-12.yml claims. apt only simulates the install
    (a real one would build the kernel module with DKMS); the GPU is a fake sysfs tree on the device."""
    fleet = edge_devices(count=1)
    host = next(iter(fleet.hosts))
    fake = "/var/tmp/fake-sys/bus/pci/devices/0000:01:00.0"
    made = fleet.run(
        host, f"sudo mkdir -p {fake} && echo 0x10de | sudo tee {fake}/vendor && echo 0x030000 | sudo tee {fake}/class"
    )
    assert made.returncode == 0, made.stderr
    playbook = tmp_path / "nonfree.yml"
    playbook.write_text(NONFREE_PLAYBOOK)
    run = run_playbook(playbook, fleet.inventory, extra_vars={"nvidia_driver_cuda_sysfs_root": "/var/tmp/fake-sys"})
    assert run.returncode == 0, run.describe()
    report = run.results("Report")[host]["msg"]
    assert report["source"] == "distribution"
    assert run.results("Install | Add Debian's contrib and non-free components")[host]["changed"] is True

    update = fleet.run(host, "sudo apt-get update -qq", timeout=300)
    assert update.returncode == 0, update.stderr
    packages = " ".join(report["driver_packages"] + report["toolkit_packages"])
    simulate = fleet.run(host, f"sudo apt-get install --simulate --no-install-recommends {packages}", timeout=300)
    assert simulate.returncode == 0, simulate.stdout[-2000:] + simulate.stderr
    policy = fleet.run(host, "apt-cache policy nvidia-driver nvidia-cuda-toolkit")
    candidates = dict(re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (\S+)", policy.stdout, flags=re.MULTILINE))
    assert candidates["nvidia-driver"].startswith(report["branch"] + "."), candidates
    assert candidates["nvidia-cuda-toolkit"].split("~")[0].startswith(report["cuda_version"] + "."), candidates
