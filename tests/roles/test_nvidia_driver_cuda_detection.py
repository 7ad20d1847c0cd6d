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


def detect(tmp_path: Path, sysfs_root: Path | str) -> dict:
    playbook = tmp_path / "detect.yml"
    playbook.write_text(DETECT_PLAYBOOK)
    run = run_playbook(
        playbook,
        localhost_inventory(tmp_path),
        extra_vars={
            "nvidia_driver_cuda_sysfs_root": str(sysfs_root),
            # No Jetson release file on the controller; point at one the test controls.
            "__nvidia_driver_cuda_tegra_release_file": str(tmp_path / "nv_tegra_release"),
        },
    )
    assert run.returncode == 0, run.describe()
    return run.results("Report")["localhost"]["msg"]


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        pytest.param(
            {"0000:00:02.0": INTEL_VGA, "0000:01:00.0": NVIDIA_VGA, "0000:01:00.1": NVIDIA_HDMI_AUDIO},
            ["0000:01:00.0"],
            id="desktop-gpu-beside-intel-graphics",
        ),
        pytest.param(
            {"0000:3b:00.0": NVIDIA_3D, "0000:af:00.0": NVIDIA_3D},
            ["0000:3b:00.0", "0000:af:00.0"],
            id="two-3d-controllers",
        ),
        pytest.param({"0000:00:02.0": INTEL_VGA, "0000:00:03.0": VIRTIO_NET}, [], id="no-nvidia"),
        pytest.param({"0000:01:00.1": NVIDIA_HDMI_AUDIO}, [], id="nvidia-audio-function-only"),
    ],
)
def test_gpu_detection_from_fake_sysfs(tmp_path, devices, expected):
    report = detect(tmp_path, fake_sysfs(tmp_path / "sys", devices))
    assert report["devices"] == expected
    assert report["gpu_present"] is bool(expected)
    assert report["jetson"] is False


def test_jetson_detected_from_device_tree_model(tmp_path):
    report = detect(tmp_path, fake_sysfs(tmp_path / "sys", {}, model="NVIDIA Jetson Xavier NX Developer Kit"))
    assert report == {"gpu_present": True, "jetson": True, "devices": []}


def test_jetson_detected_from_tegra_release_file(tmp_path):
    (tmp_path / "nv_tegra_release").write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n")
    report = detect(tmp_path, fake_sysfs(tmp_path / "sys", {}))
    assert report["jetson"] is True


def test_this_machine_has_no_gpu_in_real_sysfs(tmp_path):
    """The real /sys of the controller, read independently here, agrees with the role."""
    real = []
    for device in sorted(Path("/sys/bus/pci/devices").iterdir()):
        if (device / "vendor").read_text().strip() == "0x10de" and (device / "class").read_text().startswith("0x03"):
            real.append(device.name)
    report = detect(tmp_path, "/sys")
    assert report["devices"] == real
    assert report["gpu_present"] is bool(real)


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
