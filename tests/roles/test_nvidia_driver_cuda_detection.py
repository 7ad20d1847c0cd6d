"""GPU detection of roles/nvidia_driver_cuda, run by Ansible on the controller.

The controller has no NVIDIA GPU, so GPU hosts are simulated with a fake sysfs tree
(`nvidia_driver_cuda_sysfs_root`) laid out like the kernel's: device directories
under devices/pci0000:00/ and symlinks to them in bus/pci/devices/. The real /sys of
this machine is used for the no-GPU case.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.roles.playbook_json import localhost_inventory, run_playbook

DETECT_PLAYBOOK = """
- name: Detect GPUs
  hosts: all
  gather_facts: false
  tasks:
    - name: Run the role's detection
      ansible.builtin.include_role:
        name: edgeml.greengrass.nvidia_driver_cuda
        tasks_from: detect.yml
      vars:
        # Task vars outrank the role's vars/main.yml, so each test host points at its own files.
        __nvidia_driver_cuda_tegra_release_file: "{{ tegra_release_file }}"
        __nvidia_driver_cuda_lspci_command: "{{ lspci_command }}"
    - name: Report
      ansible.builtin.debug:
        msg:
          gpu_present: "{{ nvidia_driver_cuda_gpu_present }}"
          jetson: "{{ nvidia_driver_cuda_jetson }}"
          devices: "{{ nvidia_driver_cuda_gpu_devices }}"
"""

FULL_ROLE_PLAYBOOK = """
- name: Whole role
  hosts: all
  gather_facts: true
  roles:
    - role: edgeml.greengrass.nvidia_driver_cuda
"""

NVIDIA_VGA = ("0x10de", "0x030000")
NVIDIA_3D = ("0x10de", "0x030200")  # data-centre cards (A100, T4) are "3D controllers"
NVIDIA_HDMI_AUDIO = ("0x10de", "0x040300")
INTEL_VGA = ("0x8086", "0x030000")
VIRTIO_NET = ("0x1af4", "0x020000")


def fake_sysfs(root: Path, devices: dict[str, tuple[str, str]], model: str | None = None) -> Path:
    bus = root / "bus" / "pci" / "devices"
    bus.mkdir(parents=True)
    for address, (vendor, pci_class) in devices.items():
        device_dir = root / "devices" / "pci0000:00" / address
        device_dir.mkdir(parents=True)
        (device_dir / "vendor").write_text(vendor + "\n")
        (device_dir / "class").write_text(pci_class + "\n")
        (device_dir / "subsystem_vendor").write_text(vendor + "\n")
        (bus / address).symlink_to(Path("../../../devices/pci0000:00") / address)
    if model is not None:
        dt = root / "firmware" / "devicetree" / "base"
        dt.mkdir(parents=True)
        (dt / "model").write_bytes(model.encode() + b"\0")
    return root


# A stand-in for pciutils' lspci (not installed on these machines), printing what `lspci -Dnmm -d 10de:`
# prints on a host with a GPU and its HDMI audio function. Used only for the lspci fallback.
FAKE_LSPCI = """#!/bin/sh
echo '0000:01:00.0 "0300" "10de" "1eb8" -ra1 "10de" "12a2"'
echo '0000:01:00.1 "0403" "10de" "10f8" -ra1 "10de" "12a2"'
"""

# host: (PCI devices or "real", device-tree model, Jetson release file present, lspci kind, expected report)
CASES = {
    "desktop-gpu-beside-intel-graphics": (
        {"0000:00:02.0": INTEL_VGA, "0000:01:00.0": NVIDIA_VGA, "0000:01:00.1": NVIDIA_HDMI_AUDIO},
        None, False, "missing",
        {"gpu_present": True, "jetson": False, "devices": ["0000:01:00.0"]},
    ),
    "two-3d-controllers": (
        {"0000:3b:00.0": NVIDIA_3D, "0000:af:00.0": NVIDIA_3D},
        None, False, "missing",
        {"gpu_present": True, "jetson": False, "devices": ["0000:3b:00.0", "0000:af:00.0"]},
    ),
    "no-nvidia": (
        {"0000:00:02.0": INTEL_VGA, "0000:00:03.0": VIRTIO_NET},
        None, False, "missing",
        {"gpu_present": False, "jetson": False, "devices": []},
    ),
    "nvidia-audio-function-only": (
        {"0000:01:00.1": NVIDIA_HDMI_AUDIO},
        None, False, "missing",
        {"gpu_present": False, "jetson": False, "devices": []},
    ),
    "jetson-device-tree": (
        {}, "NVIDIA Jetson Xavier NX Developer Kit", False, "missing",
        {"gpu_present": True, "jetson": True, "devices": []},
    ),
    "jetson-release-file": (
        {}, None, True, "missing",
        {"gpu_present": True, "jetson": True, "devices": []},
    ),
    "raspberry-pi-device-tree": (
        {}, "Raspberry Pi 4 Model B Rev 1.4", False, "missing",
        {"gpu_present": False, "jetson": False, "devices": []},
    ),
    "no-pci-in-sysfs-lspci-finds-gpu": (
        {}, None, False, "fake",
        {"gpu_present": True, "jetson": False, "devices": ["0000:01:00.0"]},
    ),
    "pci-in-sysfs-lspci-not-asked": (
        {"0000:00:02.0": INTEL_VGA}, None, False, "fake",
        {"gpu_present": False, "jetson": False, "devices": []},
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    """One playbook run over one local host per case (plus this machine's real /sys)."""
    tmp_path = tmp_path_factory.mktemp("detect")
    fake_lspci = tmp_path / "lspci"
    fake_lspci.write_text(FAKE_LSPCI)
    fake_lspci.chmod(0o755)
    hosts = {}
    for name, (devices, model, tegra, lspci, _) in CASES.items():
        root = tmp_path / name
        root.mkdir()
        if tegra:
            (root / "nv_tegra_release").write_text("# R35 (release), REVISION: 4.1, BOARD: t186ref\n")
        hosts[name] = {
            "nvidia_driver_cuda_sysfs_root": str(fake_sysfs(root / "sys", devices, model)),
            "tegra_release_file": str(root / "nv_tegra_release"),
            "lspci_command": str(fake_lspci) if lspci == "fake" else str(root / "no-lspci-here"),
        }
    hosts["real-sys"] = {
        "nvidia_driver_cuda_sysfs_root": "/sys",
        "tegra_release_file": "/etc/nv_tegra_release",
        "lspci_command": "lspci",
    }
    playbook = tmp_path / "detect.yml"
    playbook.write_text(DETECT_PLAYBOOK)
    run = run_playbook(playbook, localhost_inventory(tmp_path, hosts), "--forks", "6")
    assert run.returncode == 0, run.describe()
    return run


@pytest.mark.parametrize("host", CASES)
def test_gpu_detection(detected, host):
    assert detected.results("Report")[host]["msg"] == CASES[host][-1]


def test_lspci_asked_only_when_sysfs_lists_no_pci_device(detected):
    asked = detected.results("Detect | Ask lspci when sysfs lists no PCI devices")
    assert not asked["no-pci-in-sysfs-lspci-finds-gpu"].get("skipped")
    assert asked["pci-in-sysfs-lspci-not-asked"].get("skipped") is True


def test_this_machine_has_no_gpu_in_real_sysfs(detected):
    """The real /sys of the controller, read independently here, agrees with the role."""
    real = []
    for device in sorted(Path("/sys/bus/pci/devices").iterdir()):
        if (device / "vendor").read_text().strip() == "0x10de" and (device / "class").read_text().startswith("0x03"):
            real.append(device.name)
    report = detected.results("Report")["real-sys"]["msg"]
    assert report["devices"] == real
    assert report["gpu_present"] is bool(real)
    assert report["jetson"] is Path("/etc/nv_tegra_release").exists()


def run_whole_role(tmp_path: Path, sysfs_root: Path, **extra) -> object:
    playbook = tmp_path / "role.yml"
    playbook.write_text(FULL_ROLE_PLAYBOOK)
    return run_playbook(
        playbook,
        localhost_inventory(tmp_path),
        extra_vars={
            "nvidia_driver_cuda_sysfs_root": str(sysfs_root),
            "__nvidia_driver_cuda_tegra_release_file": str(tmp_path / "nv_tegra_release"),
            **extra,
        },
    )


def test_whole_role_without_gpu_changes_nothing_and_says_why(tmp_path):
    """A real run of the whole role on this (GPU-less, Debian 12) controller: nothing changes."""
    run = run_whole_role(tmp_path, fake_sysfs(tmp_path / "sys", {"0000:00:02.0": INTEL_VGA}))
    assert run.returncode == 0, run.describe()
    assert run.stats("localhost")["changed"] == 0
    message = run.results("Preflight | Say why nothing is installed on this host")["localhost"]["msg"]
    assert "No NVIDIA GPU on localhost" in message
    assert "changes nothing" in message
    assert not any(name.startswith("Install |") for name in run.task_names("localhost"))


def test_whole_role_leaves_jetson_to_jetpack(tmp_path):
    run = run_whole_role(tmp_path, fake_sysfs(tmp_path / "sys", {}, model="NVIDIA Jetson AGX Orin Developer Kit"))
    assert run.returncode == 0, run.describe()
    assert run.stats("localhost")["changed"] == 0
    message = run.results("Preflight | Say why nothing is installed on this host")["localhost"]["msg"]
    assert "JetPack" in message


def test_require_gpu_fails_clearly_without_one(tmp_path):
    run = run_whole_role(tmp_path, fake_sysfs(tmp_path / "sys", {}), nvidia_driver_cuda_require_gpu=True)
    assert run.returncode != 0
    expected = "nvidia_driver_cuda_require_gpu is true but localhost has no NVIDIA GPU"
    assert any(expected in m for m in run.failure_messages()), run.describe()
    assert run.stats("localhost")["changed"] == 0


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"nvidia_driver_cuda_driver_branch": "55x"},
            "nvidia_driver_cuda_driver_branch must be a driver branch such as",
        ),
        ({"nvidia_driver_cuda_toolkit_version": "12"}, "nvidia_driver_cuda_toolkit_version a CUDA <major>.<minor>"),
        ({"nvidia_driver_cuda_source": "conda"}, "nvidia_driver_cuda_source"),
    ],
)
def test_bad_inputs_fail_before_anything_changes(tmp_path, extra, expected):
    run = run_whole_role(tmp_path, fake_sysfs(tmp_path / "sys", {"0000:01:00.0": NVIDIA_VGA}), **extra)
    assert run.returncode != 0
    assert any(expected in m for m in run.failure_messages()), run.describe()
    assert run.stats("localhost").get("changed", 0) == 0
    assert not any(name.startswith("Install |") for name in run.task_names("localhost"))
