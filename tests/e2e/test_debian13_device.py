"""A mixed fleet of a Debian 12 (Python 3.11) and a Debian 13 (Python 3.13) device on Greengrass V2: both get
the detector on ONNX Runtime from site.yml, and both answer the seed's request over MQTT.

MXNet 1.9.1 cannot run on Python 3.13 (its numpy < 1.24 has no wheels there): the Debian 13 device is what the
ONNX Runtime backend is for. The devices are simulated (systemd-booted containers over SSH, each bed one Debian
release), their nucleus is the stand-in that follows deployments through the bed's IoT jobs (test equipment), the
AWS side is the local endpoint; the model is the tests' small SSD, converted on the controller by the detector
role. Each device's runtime comes from a wheelhouse for its own Python.

The first run also plays a device that drops off mid-run (issue 14, test c): once the Debian 12 device, first in
the inventory (so the fleet host of the detector's fleet-wide steps had it stayed), has its identity in AWS and its
nucleus install has begun, its sshd is stopped and its SSH sessions killed (``EdgeDeviceBed.drop_off``). The other
device must converge in that run; once the dropped one is back, a re-run completes it from its half-installed state,
changes nothing on the other and makes nothing twice in AWS.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.fleet import (
    SITE_PLAYBOOK,
    aws_clients,
    aws_inventory,
    build_artefacts,
    device_bed,
    expected_detections,
    host_vars_inventory,
    run_site,
)
from tests.e2e.greengrass_mqtt import Requester
from tests.roles.wheelhouse import ensure_runtime_wheelhouse

pytestmark = [pytest.mark.devices, pytest.mark.aws, pytest.mark.slow]

DEVICES = {"deb12-01": ("bookworm", "3.11"), "deb13-01": ("trixie", "3.13")}
INPUT_TOPIC, OUTPUT_TOPIC = "blog/infer/input", "blog/infer/output"
DEVICE_IMAGE_DIR = "/var/lib/edgeml-itest"
DROPPED = "deb12-01"
# Seen from the host in the device's root: the nucleus role has begun (after the identity and runtime roles).
DROP_MARK = "greengrass/v2"
DETECTOR_COMPONENT = "com.edgeml.ObjectDetector"
THING_GROUP = "edgeml-demo-detectors"  # greengrass_v2_detector_thing_group in the demo inventory


@pytest.fixture(scope="module")
def beds(endpoint):
    (bookworm_name,), (trixie_name,) = ([name] for name in DEVICES)
    with (
        device_bed("deb12", count=1, endpoint=endpoint, suite="bookworm", names=[bookworm_name]) as bookworm,
        device_bed("deb13", count=1, endpoint=endpoint, suite="trixie", names=[trixie_name]) as trixie,
    ):
        yield {bookworm_name: bookworm, trixie_name: trixie}


class DropOff(threading.Thread):
    """Drops ``host`` off (``EdgeDeviceBed.drop_off``) as soon as ``mark`` exists in its root; records when."""

    def __init__(self, bed, host: str, mark: str):
        super().__init__(daemon=True)
        self.bed, self.host = bed, host
        self.path = next(device for device in bed.devices if device.name == host).merged / mark
        self.stop, self.dropped_at = threading.Event(), None

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.wait(0.2):
            if self.path.exists():
                self.bed.drop_off(self.host)
                self.dropped_at = time.monotonic() - started
                return


@pytest.fixture(scope="module")
def site_inputs(beds, endpoint, workdir):
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
    return inventories, extra, env, artefacts


@pytest.fixture(scope="module")
def dropped_run(beds, site_inputs, workdir):
    inventories, extra, env, _artefacts = site_inputs
    dropping = DropOff(beds[DROPPED], DROPPED, DROP_MARK)
    dropping.start()
    try:
        run = run_site(SITE_PLAYBOOK, inventories, extra, env, timeout=2400)
    finally:
        dropping.stop.set()
        dropping.join()
    (workdir / "run-dropped.json").write_text(run.output_text())
    return run, dropping.dropped_at


@pytest.fixture(scope="module")
def provisioned(dropped_run, beds, endpoint, site_inputs, workdir):
    inventories, extra, env, artefacts = site_inputs
    beds[DROPPED].come_back(DROPPED)
    run = run_site(SITE_PLAYBOOK, inventories, extra, env, timeout=2400)
    (workdir / "run.json").write_text(run.output_text())
    return run, artefacts


def test_a_device_dropping_off_mid_run_leaves_the_other_converged(dropped_run, endpoint):
    run, dropped_at = dropped_run
    assert dropped_at is not None, f"{DROPPED} never reached /{DROP_MARK}: {run.describe()}"
    other = next(host for host in DEVICES if host != DROPPED)
    assert run.recap[DROPPED]["unreachable"] == 1 and run.run.returncode != 0, run.describe()
    assert run.recap[other]["failures"] == 0 and run.recap[other]["unreachable"] == 0, run.describe()
    held = aws_inventory(aws_clients(endpoint))
    # The other device made the fleet-wide resources in the dropped one's place and got its deployment.
    assert held["components"][DETECTOR_COMPONENT] == ["1.0.0"], held["components"]
    assert [d[0] for d in held["v2_deployments"]] == [THING_GROUP], held["v2_deployments"]
    assert held["core_devices"] == [other], held["core_devices"]
    # The dropped device's identity was made before it dropped off.
    assert sorted(held["things"]) == sorted(DEVICES) and all(len(p) == 1 for p in held["things"].values()), held


def test_a_rerun_once_it_is_back_completes_it_and_makes_nothing_twice(provisioned, dropped_run, endpoint):
    run, _artefacts = provisioned
    assert run.run.returncode == 0, run.describe()
    other = next(host for host in DEVICES if host != DROPPED)
    assert run.recap[other]["changed"] == 0, run.changed_tasks().get(other)
    held = aws_inventory(aws_clients(endpoint))
    assert sorted(held["things"]) == sorted(DEVICES) and all(len(p) == 1 for p in held["things"].values()), held
    assert sorted(held["certificates"].values()) == ["ACTIVE", "ACTIVE"], held["certificates"]
    assert held["components"][DETECTOR_COMPONENT] == ["1.0.0"], held["components"]
    assert [d[0] for d in held["v2_deployments"]] == [THING_GROUP], held["v2_deployments"]
    assert held["core_devices"] == sorted(DEVICES), held["core_devices"]


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
