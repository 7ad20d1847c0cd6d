"""A mixed fleet of a Debian 12 (Python 3.11) and a Debian 13 (Python 3.13) device on Greengrass V2: both get
the detector on ONNX Runtime from one site.yml run, and both answer the seed's request over MQTT.

MXNet 1.9.1 cannot run on Python 3.13 (its numpy < 1.24 has no wheels there): the Debian 13 device is what the
ONNX Runtime backend is for. The devices are simulated (systemd-booted containers over SSH, each bed one Debian
release), their nucleus is the stand-in that follows deployments through the bed's IoT jobs (test equipment), the
AWS side is the local endpoint; the model is the tests' small SSD, converted on the controller by the detector
role. Each device's runtime comes from a wheelhouse for its own Python.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests.e2e.fleet import (
    SITE_PLAYBOOK,
    aws_clients,
    build_artefacts,
    device_bed,
    expected_detections,
    host_vars_inventory,
    kept_on_failure,
    recording_endpoint,
    run_site,
)
from tests.e2e.greengrass_mqtt import Requester
from tests.roles.wheelhouse import ensure_runtime_wheelhouse

pytestmark = [pytest.mark.devices, pytest.mark.aws, pytest.mark.slow]

DEVICES = {"deb12-01": ("bookworm", "3.11"), "deb13-01": ("trixie", "3.13")}
INPUT_TOPIC, OUTPUT_TOPIC = "blog/infer/input", "blog/infer/output"
DEVICE_IMAGE_DIR = "/var/lib/edgeml-itest"


@pytest.fixture(scope="module")
def workdir(request) -> Path:
    with kept_on_failure(request, "edgeml-e2e-deb13-") as path:
        yield path


@pytest.fixture(scope="module")
def endpoint(workdir):
    with recording_endpoint(workdir / "aws") as (aws, _requests):
        yield aws


@pytest.fixture(scope="module")
def beds(endpoint):
    (bookworm_name,), (trixie_name,) = ([name] for name in DEVICES)
    with (
        device_bed("deb12", count=1, endpoint=endpoint, suite="bookworm", names=[bookworm_name]) as bookworm,
        device_bed("deb13", count=1, endpoint=endpoint, suite="trixie", names=[trixie_name]) as trixie,
    ):
        yield {bookworm_name: bookworm, trixie_name: trixie}


@pytest.fixture(scope="module")
def provisioned(beds, endpoint, workdir):
    artefacts = build_artefacts(workdir / "artefacts")
    # Each device its own wheelhouse (extra vars would outrank the host vars below).
    del artefacts["inference_runtime_wheelhouse_src"]
    host_vars = {
        host: {
            "edgeml_greengrass_generation": "v2",
            "greengrass_v2_detector_deployment_wait": True,
            "greengrass_v2_detector_deployment_wait_timeout": 600,
            "inference_runtime_wheelhouse_src": str(ensure_runtime_wheelhouse(python)),
        }
        for host, (_suite, python) in DEVICES.items()
    }
    inventories = [bed.inventory for bed in beds.values()]
    inventories.append(host_vars_inventory(workdir / "mixed-vars.yml", host_vars))
    extra = workdir / "artefacts.json"
    extra.write_text(json.dumps(artefacts))
    env = dict(os.environ, **endpoint.environment())
    run = run_site(SITE_PLAYBOOK, inventories, extra, env, timeout=2400)
    (workdir / "run.json").write_text(run.output_text())
    return run, artefacts


def test_both_releases_get_the_detector_on_onnx_runtime_and_answer(provisioned, beds, endpoint, workdir):
    run, artefacts = provisioned
    assert run.run.returncode == 0, run.describe()
    for host, (_suite, python) in DEVICES.items():
        bed = beds[host]
        release = bed.run(host, ". /etc/os-release; echo $VERSION_ID; python3 -c 'import sys; print(sys.version[:4])'")
        assert release.stdout.split() == [{"3.11": "12", "3.13": "13"}[python], python], release.stdout
        installed = bed.run(host, "/opt/edgeml/inference-venv/bin/python -m pip list --format freeze 2>/dev/null")
        assert "onnxruntime==1.24.4" in installed.stdout and "mxnet" not in installed.stdout, installed.stdout
        # The sample picture on the device, readable by the component user.
        image = base64.b64encode(Path(artefacts["smoke_test_image"]).read_bytes()).decode()
        copied = bed.run(
            host,
            f"sudo mkdir -p {DEVICE_IMAGE_DIR} && echo {image} | base64 -d | sudo tee {DEVICE_IMAGE_DIR}/sample.png "
            f">/dev/null && sudo chmod 0755 {DEVICE_IMAGE_DIR} && sudo chmod 0644 {DEVICE_IMAGE_DIR}/sample.png",
        )
        assert copied.returncode == 0, copied.stderr

    requester = Requester(
        endpoint, aws_clients(endpoint), workdir / "requester", "itest-mixed", INPUT_TOPIC, OUTPUT_TOPIC
    )
    try:
        answers = requester.ask_devices({"image_path": f"{DEVICE_IMAGE_DIR}/sample.png"}, set(DEVICES))
    finally:
        requester.close()
    logs = {
        host: beds[host].run(host, "sudo tail -n 40 /greengrass/v2/logs/com.edgeml.ObjectDetector.log").stdout
        for host in DEVICES
        if host not in answers
    }
    assert set(answers) == set(DEVICES), logs
    expected = expected_detections()
    for host, answer in answers.items():
        assert answer["inference"] == {"backend": "onnxruntime", "device": "CPUExecutionProvider"}, answer
        found = {d["label"]: tuple(d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")) for d in answer["detections"]}
        assert sorted(found) == sorted(expected), (host, answer)
        for label, box in expected.items():
            assert found[label] == pytest.approx(box, abs=1e-3), (host, label, answer)
