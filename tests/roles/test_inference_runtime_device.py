"""roles/inference_runtime on a real simulated device (Debian 12, Python 3.11 only).

The role's default backend, ONNX Runtime. Bad inputs must stop in preflight with a message naming the input
and leave the device as it was (no /opt/edgeml, no python3-venv). Then the role runs four times like an
integration target: check mode, for real, check mode again (predicts no change), for real again (changes
nothing).
"""

from __future__ import annotations

import pytest

from tests.roles.playbook_json import run_playbook
from tests.roles.wheelhouse import ensure_runtime_wheelhouse

pytestmark = [pytest.mark.devices, pytest.mark.slow]

PLAYBOOK = """
- name: Runtime on the devices
  hosts: edge_devices
  gather_facts: true
  roles:
    - role: edgeml.greengrass.inference_runtime
"""

BAD_INPUTS = [
    (
        # Debian 12 has no python3.8: the Greengrass V1 Lambda's interpreter cannot exist there.
        {"inference_runtime_lambda_python": "python3.8"},
        'inference_runtime_lambda_python "python3.8" is not installed on',
    ),
    (
        # python3 exists (3.11) but a V1 core runs only python3.7/python3.8 Lambdas.
        {"inference_runtime_lambda_python": "python3"},
        'inference_runtime_lambda_python "python3" is Python 3.11; Greengrass V1 Lambdas run on python3.7 or python3.8',
    ),
    (
        {"inference_runtime_wheelhouse_src": "/nonexistent/edgeml-wheels"},
        "inference_runtime_wheelhouse_src must be a directory of wheels on the controller; "
        '"/nonexistent/edgeml-wheels" is not a directory',
    ),
    (
        {"inference_runtime_mxnet_version": "latest"},
        'exact versions (or "auto" where the default is) such as inference_runtime_mxnet_version "1.9.1"',
    ),
    (
        # ONNX Runtime's GPU builds on PyPI are CUDA 12 builds: a CUDA 11 device is told its choices.
        {"inference_runtime_cuda_version": "11.7"},
        "CUDA 11.7 found; onnxruntime-gpu's PyPI builds this role installs are for CUDA 12",
    ),
]


def test_bad_inputs_then_check_real_check_real(edge_devices, tmp_path):
    fleet = edge_devices(count=1)
    host = next(iter(fleet.hosts))
    playbook = tmp_path / "runtime.yml"
    playbook.write_text(PLAYBOOK)
    for extra_vars, expected in BAD_INPUTS:
        run = run_playbook(playbook, fleet.inventory, extra_vars=extra_vars)
        assert run.returncode != 0, f"{extra_vars} was accepted"
        assert any(expected in message for message in run.failure_messages()), (extra_vars, run.describe())
        assert run.stats(host).get("changed", 0) == 0
        assert not [name for name in run.task_names(host) if name.startswith("Install |")]
    left = fleet.run(host, "test -e /opt/edgeml && echo present; dpkg-query -W -f '${Status}' python3-venv 2>&1")
    assert "present" not in left.stdout
    assert "install ok installed" not in left.stdout

    # The default backend, ONNX Runtime (the molecule scenario inference_runtime runs the MXNet one).
    wheels = {"inference_runtime_wheelhouse_src": str(ensure_runtime_wheelhouse())}
    check = run_playbook(playbook, fleet.inventory, "--check", extra_vars=wheels)
    assert check.returncode == 0, check.describe()
    assert check.stats(host)["changed"] > 0
    skipped = check.results("Verify | Say why the check is skipped in check mode")[host]
    assert "does not exist yet (check mode)" in skipped["msg"]
    left = fleet.run(host, "test -e /opt/edgeml && echo present; dpkg-query -W -f '${Status}' python3-venv 2>&1")
    assert "present" not in left.stdout
    assert "install ok installed" not in left.stdout

    real = run_playbook(playbook, fleet.inventory, extra_vars=wheels)
    assert real.returncode == 0, real.describe()
    assert real.stats(host)["changed"] > 0
    summary = real.results("Verify | Check the versions and the forward pass")[host]["msg"]
    assert (
        "onnxruntime 1.24.4 (onnxruntime, CPUExecutionProvider), numpy 2.2.6, OpenCV 4.11.0 on Python 3.11" in summary
    )
    assert "SSD forward pass in" in summary
    installed = fleet.run(host, "/opt/edgeml/inference-venv/bin/python -m pip list --format freeze 2>/dev/null")
    assert "onnxruntime==1.24.4" in installed.stdout and "mxnet" not in installed.stdout

    for args in (("--check",), ()):
        again = run_playbook(playbook, fleet.inventory, *args, extra_vars=wheels)
        assert again.returncode == 0, again.describe()
        assert again.stats(host)["changed"] == 0, (args, again.describe())
        assert again.results("Verify | Check the versions and the forward pass")[host].get("failed") is not True
