"""How roles/inference_runtime picks and pins its packages, and what its check script reports.

The build choice depends on the CUDA version and the architecture; each case is a
local-connection host with `ansible_facts` set to the OS/arch under test, running the
role's real preflight (which also probes the interpreter: this controller's python3).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.roles import wheelhouse
from tests.roles.playbook_json import REPO_ROOT, localhost_inventory, run_playbook

ROLE = REPO_ROOT / "roles" / "inference_runtime"

PLAYBOOK = """
- name: Choose the MXNet build as each host would
  hosts: all
  gather_facts: false
  tasks:
    - name: Pretend to be the OS under test
      ansible.builtin.set_fact:
        ansible_facts: "{{ fake_facts }}"

    - name: Run the role's preflight
      ansible.builtin.include_role:
        name: edgeml.greengrass.inference_runtime
        tasks_from: preflight.yml
        public: true

    - name: Report
      ansible.builtin.debug:
        msg:
          build: "{{ __inference_runtime_mxnet_build }}"
          requirements: "{{ __inference_runtime_requirements }}"
          pip_args: "{{ __inference_runtime_pip_args | trim }}"
"""


def facts(arch="x86_64", distro="Debian", version="12"):
    return {
        "distribution": distro,
        "distribution_version": version,
        "distribution_major_version": version.split(".")[0],
        "architecture": arch,
    }


CASES = {
    # host: (host vars, expected build or expected failure text)
    "cpu-only": ({"fake_facts": facts()}, "mxnet"),
    "from-nvidia-role-fact": ({"fake_facts": facts(), "nvidia_driver_cuda_cuda_version": "11.2"}, "mxnet-cu112"),
    "cuda-10-2": ({"fake_facts": facts(), "inference_runtime_cuda_version": "10.2"}, "mxnet-cu102"),
    "cuda-11-0": ({"fake_facts": facts(), "inference_runtime_cuda_version": "11.0"}, "mxnet-cu110"),
    "cuda-11-7": ({"fake_facts": facts(), "inference_runtime_cuda_version": "11.7"}, "mxnet-cu117"),
    "debian12-cuda-11-8": ({"fake_facts": facts(), "nvidia_driver_cuda_cuda_version": "11.8"}, "mxnet-cu117"),
    "arm64-cpu": ({"fake_facts": facts("aarch64", "Ubuntu", "22.04")}, "mxnet"),
    "explicit-cpu-on-cuda-12": (
        {
            "fake_facts": facts(),
            "inference_runtime_cuda_version": "12.4",
            "inference_runtime_mxnet_package": "mxnet",
        },
        "mxnet",
    ),
    "cuda-12": (
        {"fake_facts": facts(), "inference_runtime_cuda_version": "12.4"},
        "FAIL:No MXNet 1.9.1 GPU build for CUDA 12.4",
    ),
    "arm64-gpu": (
        {"fake_facts": facts("aarch64", "Ubuntu", "22.04"), "inference_runtime_cuda_version": "11.7"},
        "FAIL:mxnet-cu117 is published for x86_64 only; this host is aarch64",
    ),
    "bad-version": (
        {"fake_facts": facts(), "inference_runtime_numpy_version": "<1.24"},
        "FAIL:Expected exact versions such as",
    ),
    "bad-cuda": (
        {"fake_facts": facts(), "inference_runtime_cuda_version": "eleven"},
        "FAIL:inference_runtime_cuda_version",
    ),
    "unsupported-os": (
        {"fake_facts": facts("x86_64", "Fedora", "40")},
        "FAIL:this host is Fedora 40 on x86_64",
    ),
    "unsupported-arch": (
        {"fake_facts": facts("armv7l", "Debian", "12")},
        "FAIL:this host is Debian 12 on armv7l",
    ),
    "missing-wheelhouse": (
        {"fake_facts": facts(), "inference_runtime_wheelhouse_src": "/nonexistent/wheels"},
        'FAIL:"/nonexistent/wheels" is not a directory',
    ),
    "missing-python": (
        {"fake_facts": facts(), "inference_runtime_python": "python2.6"},
        'FAIL:inference_runtime_python "python2.6" is not an interpreter on missing-python',
    ),
}


@pytest.fixture(scope="module")
def selection(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mxnet_selection")
    playbook = tmp_path / "select.yml"
    playbook.write_text(PLAYBOOK)
    hosts = {name: host_vars for name, (host_vars, _) in CASES.items()}
    return run_playbook(playbook, localhost_inventory(tmp_path, hosts), "--forks", "6")


@pytest.mark.parametrize("host", CASES)
def test_build_choice_and_preflight_failures(selection, host):
    expected = CASES[host][1]
    report = selection.results("Report").get(host)
    if expected.startswith("FAIL:"):
        assert report is None, f"{host} passed its preflight: {report}"
        failures = [
            str(result.get("msg"))
            for play in selection.output["plays"]
            for task in play["tasks"]
            for name, result in task["hosts"].items()
            if name == host and result.get("failed")
        ]
        assert any(expected[5:] in message for message in failures), failures
        return
    assert report is not None, selection.describe()
    assert report["msg"]["build"] == expected
    assert report["msg"]["requirements"] == [
        f"{expected}==1.9.1",
        "numpy==1.23.5",
        "opencv-python-headless==4.11.0.86",
    ]
    assert report["msg"]["pip_args"] == ""


def test_wheelhouse_switches_pip_offline(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "mxnet-1.9.1-py3-none-manylinux2014_x86_64.whl").write_bytes(b"")
    playbook = tmp_path / "select.yml"
    playbook.write_text(PLAYBOOK)
    inventory = localhost_inventory(
        tmp_path, {"offline": {"fake_facts": facts(), "inference_runtime_wheelhouse_src": str(tmp_path / "wheels")}}
    )
    run = run_playbook(playbook, inventory)
    assert run.returncode == 0, run.describe()
    assert run.results("Report")["offline"]["msg"]["pip_args"] == "--no-index --find-links /opt/edgeml/wheelhouse"


def test_empty_wheelhouse_is_refused(tmp_path):
    (tmp_path / "wheels").mkdir()
    playbook = tmp_path / "select.yml"
    playbook.write_text(PLAYBOOK)
    inventory = localhost_inventory(
        tmp_path, {"offline": {"fake_facts": facts(), "inference_runtime_wheelhouse_src": str(tmp_path / "wheels")}}
    )
    run = run_playbook(playbook, inventory)
    assert run.returncode != 0
    assert any(f'"{tmp_path / "wheels"}" has no *.whl files' in m for m in run.failure_messages()), run.describe()


def test_wheelhouse_pins_match_the_role():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert wheelhouse.REQUIREMENTS == (
        f"mxnet=={defaults['inference_runtime_mxnet_version']}",
        f"numpy=={defaults['inference_runtime_numpy_version']}",
        f"opencv-python-headless=={defaults['inference_runtime_opencv_version']}",
    )


def test_check_script_runs_a_real_ssd_forward_pass():
    """The role's check script, run with this controller's MXNet 1.9.1 / numpy / OpenCV."""
    result = subprocess.run(
        [sys.executable, str(ROLE / "files" / "ssd_forward_check.py"), "--size", "128"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["output_name"] == "detection_output"
    assert report["output_shape"][0] == 1
    assert report["output_shape"][2] == 6
    # Two feature maps (128/8=16, 128/16=8 cells) with 4 anchors per cell.
    assert report["output_shape"][1] == (16 * 16 + 8 * 8) * 4
    assert report["rows_valid"] is True
    assert report["context"] == "cpu(0)"
    assert (report["mxnet"], report["numpy"]) == ("1.9.1", "1.23.5")
