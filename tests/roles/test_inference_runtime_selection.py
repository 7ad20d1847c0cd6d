"""How roles/inference_runtime picks and pins its packages (both backends), and what its check scripts report.

The build choice depends on the CUDA version and the architecture; each case is a
local-connection host with `ansible_facts` set to the OS/arch under test, running the
role's real preflight (which also probes the interpreter: this controller's python3).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.roles import wheelhouse
from tests.roles.playbook_json import REPO_ROOT, localhost_inventory, run_module_process, run_playbook

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
          build: "{{ __inference_runtime_choice.package }}"
          requirements: "{{ __inference_runtime_choice.requirements }}"
          pip_args: "{{ __inference_runtime_pip_args | trim }}"
"""


def mxnet(**host_vars):
    return {"inference_runtime_backend": "mxnet", **host_vars}


def facts(arch="x86_64", distro="Debian", version="12"):
    return {
        "distribution": distro,
        "distribution_version": version,
        "distribution_major_version": version.split(".")[0],
        "architecture": arch,
    }


MXNET_PINS = ["numpy==1.23.5", "opencv-python-headless==4.11.0.86"]
# This controller's python3 is the "device's" Python here: 3.11.
ONNX_PINS = ["numpy==2.2.6", "opencv-python-headless==4.11.0.86"]
CASES = {
    # host: (host vars, expected build and requirements, or expected failure text)
    "cpu-only": (mxnet(fake_facts=facts()), ["mxnet==1.9.1", *MXNET_PINS]),
    "from-nvidia-role-fact": (
        mxnet(fake_facts=facts(), nvidia_driver_cuda_cuda_version="11.2"),
        ["mxnet-cu112==1.9.1", *MXNET_PINS],
    ),
    "cuda-10-2": (
        mxnet(fake_facts=facts(), inference_runtime_cuda_version="10.2"),
        ["mxnet-cu102==1.9.1", *MXNET_PINS],
    ),
    "cuda-11-0": (
        mxnet(fake_facts=facts(), inference_runtime_cuda_version="11.0"),
        ["mxnet-cu110==1.9.1", *MXNET_PINS],
    ),
    "cuda-11-7": (
        mxnet(fake_facts=facts(), inference_runtime_cuda_version="11.7"),
        ["mxnet-cu117==1.9.1", *MXNET_PINS],
    ),
    "debian12-cuda-11-8": (
        mxnet(fake_facts=facts(), nvidia_driver_cuda_cuda_version="11.8"),
        ["mxnet-cu117==1.9.1", *MXNET_PINS],
    ),
    "arm64-cpu": (mxnet(fake_facts=facts("aarch64", "Ubuntu", "22.04")), ["mxnet==1.9.1", *MXNET_PINS]),
    "explicit-cpu-on-cuda-12": (
        mxnet(fake_facts=facts(), inference_runtime_cuda_version="12.4", inference_runtime_mxnet_package="mxnet"),
        ["mxnet==1.9.1", *MXNET_PINS],
    ),
    "cuda-12": (
        mxnet(fake_facts=facts(), inference_runtime_cuda_version="12.4"),
        "FAIL:No MXNet 1.9.1 GPU build for CUDA 12.4",
    ),
    "arm64-gpu": (
        mxnet(fake_facts=facts("aarch64", "Ubuntu", "22.04"), inference_runtime_cuda_version="11.7"),
        "FAIL:mxnet-cu117 is published for x86_64 only; this host is aarch64",
    ),
    # The ONNX Runtime backend (the default).
    "onnx-cpu": ({"fake_facts": facts()}, ["onnxruntime==1.24.4", *ONNX_PINS]),
    "onnx-debian13": ({"fake_facts": facts(version="13")}, ["onnxruntime==1.24.4", *ONNX_PINS]),
    "onnx-arm64-cpu": ({"fake_facts": facts("aarch64", "Ubuntu", "24.04")}, ["onnxruntime==1.24.4", *ONNX_PINS]),
    "onnx-cuda-12": (
        {"fake_facts": facts("x86_64", "Ubuntu", "24.04"), "nvidia_driver_cuda_cuda_version": "12.4"},
        ["onnxruntime-gpu[cuda,cudnn]==1.24.4", *ONNX_PINS],
    ),
    "onnx-pinned": (
        {
            "fake_facts": facts(),
            "inference_runtime_onnxruntime_version": "1.23.2",
            "inference_runtime_numpy_version": "1.26.4",
        },
        ["onnxruntime==1.23.2", "numpy==1.26.4", "opencv-python-headless==4.11.0.86"],
    ),
    "onnx-cuda-11": (
        {"fake_facts": facts(), "inference_runtime_cuda_version": "11.8"},
        "FAIL:CUDA 11.8 found; onnxruntime-gpu's PyPI builds this role installs are for CUDA 12",
    ),
    "onnx-jetson": (
        {"fake_facts": facts("aarch64", "Ubuntu", "22.04"), "inference_runtime_cuda_version": "12.6"},
        "FAIL:No onnxruntime-gpu build for CUDA 12.6 on aarch64 with Python 3.11 on PyPI (Jetson boards need",
    ),
    "onnx-jetson-on-cpu": (
        {
            "fake_facts": facts("aarch64", "Ubuntu", "22.04"),
            "inference_runtime_cuda_version": "12.6",
            "inference_runtime_onnxruntime_package": "onnxruntime",
        },
        ["onnxruntime==1.24.4", *ONNX_PINS],
    ),
    "bad-backend": (
        {"fake_facts": facts(), "inference_runtime_backend": "tensorflow"},
        # The argument spec's choices refuse it (the preflight validates the spec itself, also when it runs alone).
        "FAIL:value of inference_runtime_backend must be one of: onnxruntime, mxnet, got: tensorflow",
    ),
    "bad-version": (
        {"fake_facts": facts(), "inference_runtime_numpy_version": "<1.24"},
        'FAIL:exact versions (or "auto" where the default is)',
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
    if isinstance(expected, str) and expected.startswith("FAIL:"):
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
    assert report["msg"]["requirements"] == expected
    assert report["msg"]["build"] == expected[0].split("==")[0].split("[")[0]
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


def test_wheelhouse_pins_match_the_role(selection):
    """The test bed's wheelhouse holds what the role chooses for its devices (Debian 12, Python 3.11, no GPU)."""
    assert tuple(selection.results("Report")["cpu-only"]["msg"]["requirements"]) == wheelhouse.REQUIREMENTS
    assert tuple(selection.results("Report")["onnx-cpu"]["msg"]["requirements"]) == wheelhouse.ONNX_REQUIREMENTS


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


def test_onnx_check_script_runs_the_converted_check_model():
    """The ONNX Runtime check, run with this controller's onnxruntime: the detector's three outputs."""
    result = subprocess.run(
        [sys.executable, str(ROLE / "files" / "onnx_forward_check.py"), "--context", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rows_valid"] is True and report["runtime"] == "onnxruntime"
    # The MXNet check's model at 128 pixels: 4 classes with the background, (16*16 + 8*8) * 4 anchors.
    assert report["output_shapes"] == [[1, 4, 1280], [1, 5120], [1, 1280, 4]]
    assert report["providers"] == ["CPUExecutionProvider"] and report["gpu"] is False


def test_onnx_check_model_is_the_mxnet_check_model_converted(tmp_path):
    """files/ssd_check.onnx is what ssd_model_onnx makes from ssd_forward_check.py's model (its provenance, and
    the conversion's determinism): regenerated here, the same graph and weights byte for byte."""
    import onnx

    prefix = tmp_path / "check" / "deploy_model_algo_1"
    prefix.parent.mkdir()
    script = ROLE / "files" / "ssd_forward_check.py"
    exported = subprocess.run(
        [sys.executable, str(script), "--size", "128", "--export-checkpoint", str(prefix)],
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 0, exported.stderr
    result = run_module_process(
        "ssd_model_onnx",
        {"src": str(prefix.parent), "dest": str(tmp_path / "ssd_check.onnx"), "input_size": 128},
        tmp_path / "args.json",
    )
    assert result.get("changed") is True, result

    def without_record(path):
        # The conversion record holds the verification's measured differences (floating point of this CPU).
        model = onnx.load(str(path))
        kept = [prop for prop in model.metadata_props if prop.key != "edgeml.conversion"]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        return model.SerializeToString()

    assert without_record(tmp_path / "ssd_check.onnx") == without_record(ROLE / "files" / "ssd_check.onnx")
