"""End to end on Greengrass V2: the seed's final check, through Greengrass, with device-reported status.

One simulated Debian 12 device provisioned as a V2 core device by playbooks/site.yml against the local AWS
endpoint and its data plane. Its nucleus is the stand-in (testbed/standins/greengrass_v2_nucleus, test
equipment): it connects to the bed's broker with the certificate the roles made, follows its deployment
jobs, resolves the components on the Greengrass data plane, downloads their S3 artifacts with the
token-exchange credentials, runs their lifecycles as ggc_user and relays the detector's IPC to AWS IoT Core.
Nothing plays the device's part: the status the role waits for is the one the device reported, and the
detections come back over MQTT from the detector the deployment started.

The tests run in order and each reads the state the previous ones left:
1. first deployment: SUCCEEDED as reported by the device, which the role waited for;
2. a request on blog/infer/input comes back as detections on blog/infer/output;
3. a deployment with a broken model fails on the device with the component's error, rolls back, and the
   previous detector keeps answering;
4. a device offline during a deployment picks it up when it is back online, and the new version answers;
5. site.yml killed (SIGKILL, the whole process tree) after a new component version and before its deployment:
   the re-run deploys that version, with nothing made twice;
6. another team replaces the group's deployment with its own component (the device uninstalls the detector):
   site.yml deploys the detector again and keeps their component, and both run on the device;
7. the edgeml.greengrass.aws_iot inventory plugin lists the device with what its nucleus reported, and Ansible reaches
   it through that inventory alone.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from testbed.edge_devices import DEVICE_USER
from testbed.fault_proxy import FaultPlan, FaultProxy, FaultRule
from tests.e2e.fleet import (
    REPO_ROOT,
    SITE_PLAYBOOK,
    aws_clients,
    aws_inventory,
    build_artefacts,
    device_bed,
    expected_detections,
    host_vars_inventory,
    run_site,
    start_site,
)
from tests.e2e.greengrass_mqtt import Requester
from tests.roles.playbook_json import kill_process_tree, without_unsafe_markers

pytestmark = [pytest.mark.devices, pytest.mark.aws, pytest.mark.slow]

HOST = "edge-01"
THING_GROUP = "edgeml-demo-detectors"  # greengrass_v2_detector_thing_group in the demo inventory
DETECTOR, MODEL = "com.edgeml.ObjectDetector", "com.edgeml.SsdModel"  # the role's default component names
INPUT_TOPIC, OUTPUT_TOPIC = "blog/infer/input", "blog/infer/output"
DEVICE_IMAGE_DIR = "/var/lib/edgeml-itest"
AGENT_STATE = "/greengrass/v2/standin/deployment.json"


@pytest.fixture(scope="module")
def client(endpoint):
    return aws_clients(endpoint)


@pytest.fixture(scope="module")
def fleet(endpoint):
    with device_bed("e2e-gg2", count=1, endpoint=endpoint) as bed:
        yield bed


@pytest.fixture(scope="module")
def artefacts(workdir) -> dict:
    return build_artefacts(workdir / "artefacts")


@pytest.fixture(scope="module")
def env(endpoint, workdir) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(endpoint.environment())
    return environment


def site_inputs(fleet, workdir, artefacts, name: str, **host_vars) -> tuple[list[Path], Path]:
    """The inventories and extra-vars file of site.yml for the device as a V2 core whose status the role waits for."""
    values = {
        "edgeml_greengrass_generation": "v2",
        "greengrass_v2_detector_deployment_wait": True,
        "greengrass_v2_detector_deployment_wait_timeout": 420,
        **host_vars,
    }
    inventory = host_vars_inventory(workdir / f"{name}-vars.yml", {HOST: values})
    extra = workdir / f"{name}-artefacts.json"
    extra.write_text(json.dumps(artefacts))
    return [fleet.inventory, inventory], extra


def site(fleet, workdir, artefacts, env, name: str, **host_vars):
    inventories, extra = site_inputs(fleet, workdir, artefacts, name, **host_vars)
    run = run_site(SITE_PLAYBOOK, inventories, extra, env, timeout=1500)
    (workdir / f"run-{name}.json").write_text(run.output_text())
    return run


def device_status(client) -> list[dict]:
    """The device's effective deployments, as its nucleus reported them (newest first)."""
    deployments = client("greengrassv2").list_effective_deployments(coreDeviceThingName=HOST)
    return sorted(deployments["effectiveDeployments"], key=lambda d: d["creationTimestamp"], reverse=True)


def running_versions(fleet) -> dict[str, str]:
    state = fleet.run(HOST, f"sudo cat {AGENT_STATE}")
    assert state.returncode == 0, state.stderr
    return {name: spec["componentVersion"] for name, spec in json.loads(state.stdout)["components"].items()}


@pytest.fixture(scope="module")
def first_deployment(fleet, workdir, artefacts, env):
    return site(fleet, workdir, artefacts, env, "first")


@pytest.fixture(scope="module")
def mqtt_client(first_deployment, client, endpoint, workdir, fleet, artefacts):
    """A test client with its own certificate and a policy for the two detector topics only."""
    requester = Requester(endpoint, client, workdir / "requester", "itest-requester", INPUT_TOPIC, OUTPUT_TOPIC)
    # The sample image on the device, readable by the component user.
    image = base64.b64encode(Path(artefacts["smoke_test_image"]).read_bytes()).decode()
    copied = fleet.run(
        HOST,
        f"sudo mkdir -p {DEVICE_IMAGE_DIR} && echo {image} | base64 -d | sudo tee {DEVICE_IMAGE_DIR}/sample.png "
        f">/dev/null && sudo chmod 0755 {DEVICE_IMAGE_DIR} && sudo chmod 0644 {DEVICE_IMAGE_DIR}/sample.png",
    )
    assert copied.returncode == 0, copied.stderr
    yield requester
    requester.close()


def device_logs(fleet) -> str:
    """The nucleus's and the detector's logs on the device, for a failure message."""
    logs = fleet.run(HOST, f"sudo tail -n 60 /greengrass/v2/logs/greengrass.log /greengrass/v2/logs/{DETECTOR}.log")
    return logs.stdout + logs.stderr


def ask(requester: Requester, fleet) -> dict:
    answer = requester.ask({"image_path": f"{DEVICE_IMAGE_DIR}/sample.png"})
    assert answer is not None, f"no answer on {OUTPUT_TOPIC} within 120 s\n{device_logs(fleet)}"
    return answer.payload


def assert_sample_detections(answer: dict) -> None:
    detections = answer.get("detections")
    assert detections is not None, answer
    found = {d["label"]: tuple(d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")) for d in detections}
    expected = expected_detections()
    assert sorted(found) == sorted(expected), answer
    for label, box in expected.items():
        assert found[label] == pytest.approx(box, abs=1e-3), (label, answer)


# --------------------------------------------------------------------------- 1. device-reported status


def test_the_role_waits_for_the_status_the_device_reported(first_deployment, client, fleet):
    assert first_deployment.run.returncode == 0, first_deployment.describe()
    [waited] = first_deployment.run.results("Wait for this device's status for the deployment").values()
    mine = [d for d in waited["core_devices"] if d["core_device"] == HOST]
    assert [d["status"] for d in mine] == ["SUCCEEDED"], waited["core_devices"]

    latest = device_status(client)[0]
    assert latest["coreDeviceExecutionStatus"] == "SUCCEEDED", latest
    # The status went through the IoT job the deployment made: the device updated its execution itself.
    job_id = latest["iotJobId"]
    execution = client("iot").describe_job_execution(jobId=job_id, thingName=HOST)["execution"]
    assert execution["status"] == "SUCCEEDED", execution
    # The core device registered through its own health message, with the stand-in's version.
    core = client("greengrassv2").get_core_device(coreDeviceThingName=HOST)
    assert core["status"] == "HEALTHY" and "standin" in core["coreVersion"], core
    # The detector runs as the component user, started by the nucleus.
    processes = fleet.run(HOST, "ps -o user=,args= -u ggc_user").stdout
    assert "greengrass_v2_detector.py" in processes, processes
    assert set(running_versions(fleet)) == {DETECTOR, MODEL}


# --------------------------------------------------------------------------- 2. the seed's check over MQTT


def test_a_request_on_the_input_topic_comes_back_as_detections(mqtt_client, fleet, artefacts):
    answer = ask(mqtt_client, fleet)
    assert answer["image_path"] == f"{DEVICE_IMAGE_DIR}/sample.png", answer
    assert answer["thing_name"] == HOST, answer
    assert answer["component"] == {"name": DETECTOR, "version": running_versions(fleet)[DETECTOR]}, answer
    # The V2 default: the model converted on the controller, run by ONNX Runtime on the device's CPU.
    assert answer["inference"] == {"backend": "onnxruntime", "device": "CPUExecutionProvider"}, answer
    assert_sample_detections(answer)
    # The same image inside the request, for a client with no access to the device's disk.
    inline = mqtt_client.ask(
        {"image_base64": base64.b64encode(Path(artefacts["smoke_test_image"]).read_bytes()).decode()}
    )
    assert inline is not None, device_logs(fleet)
    assert inline.payload["image_bytes"] == Path(artefacts["smoke_test_image"]).stat().st_size, inline.payload
    assert_sample_detections(inline.payload)


# --------------------------------------------------------------------------- 3. broken model: FAILED, rollback


def test_a_broken_model_is_refused_on_the_controller_before_anything_is_uploaded(
    mqtt_client, fleet, workdir, artefacts, env, client
):
    before = running_versions(fleet)
    components_before = client("greengrassv2").list_components(scope="PRIVATE")["components"]
    # What ssd_model_archive_info can check holds (a .tar.gz with the checkpoint's two files at its root); the
    # weights are not MXNet's: converting the model for ONNX Runtime (the default backend) finds out.
    broken = workdir / "broken-model.tar.gz"
    with (
        tarfile.open(Path(artefacts["greengrass_v2_detector_model_archive"])) as good,
        tarfile.open(broken, "w:gz") as bad,
    ):
        for member in good.getmembers():
            data = good.extractfile(member).read()
            if member.name.endswith(".params"):
                data = b"not MXNet weights" * 64
            member.size = len(data)
            bad.addfile(member, io.BytesIO(data))
    run = site(fleet, workdir, dict(artefacts, greengrass_v2_detector_model_archive=str(broken)), env, "broken")
    assert run.run.returncode != 0
    message = " ".join(run.host_failures(HOST))
    assert f"{broken}: cannot load the checkpoint" in message and "Traceback" not in message, message
    # Nothing new in AWS, nothing new on the device: the previous versions still answer.
    after = client("greengrassv2").list_components(scope="PRIVATE")["components"]
    assert [(c["componentName"], c["latestVersion"]["componentVersion"]) for c in after] == [
        (c["componentName"], c["latestVersion"]["componentVersion"]) for c in components_before
    ]
    assert running_versions(fleet) == before
    assert_sample_detections(ask(mqtt_client, fleet))


def test_a_model_that_does_not_load_on_the_device_fails_there_and_rolls_back(
    mqtt_client, fleet, workdir, artefacts, env, client
):
    before = running_versions(fleet)
    # Only the device can tell: a detector told to use a GPU on a device that has none (ONNX Runtime's CPU build).
    # The component's Install step loads the model with Run's settings and fails three times; ROLLBACK.
    run = site(fleet, workdir, artefacts, env, "no-gpu", greengrass_v2_detector_context="gpu")
    assert run.run.returncode != 0, "a deployment that failed on the device must fail its host"
    message = " ".join(run.host_failures(HOST))
    assert "FAILED" in message and DETECTOR in message and "Install" in message, message

    latest = device_status(client)[0]
    assert latest["coreDeviceExecutionStatus"] == "FAILED", latest
    assert "BROKEN" in latest.get("reason", ""), latest
    logs = device_logs(fleet)
    assert "asks for a GPU but this onnxruntime offers" in logs, logs[-3000:]
    # Rolled back: the previous versions run again and answer.
    assert running_versions(fleet) == before
    assert_sample_detections(ask(mqtt_client, fleet))


# --------------------------------------------------------------------------- 4. device down during a deployment


def test_a_device_offline_during_a_deployment_gets_it_when_back(
    mqtt_client, fleet, workdir, artefacts, env, client, endpoint
):
    before = running_versions(fleet)
    # Offline: the nucleus restarts and cannot reach the data endpoint (nothing listens where it is sent). The
    # device stays reachable over SSH, so site.yml runs as for any device whose network to AWS is down.
    endpoints = endpoint.device_endpoints()
    fleet.write_endpoints(dict(endpoints, mqtt={"host": "127.0.0.1", "port": 9}))
    assert fleet.run(HOST, "sudo systemctl restart greengrass.service").returncode == 0
    # A new detector version (another score threshold), not waited for: the device cannot report.
    run = site(
        fleet,
        workdir,
        artefacts,
        env,
        "while-offline",
        greengrass_v2_detector_deployment_wait=False,
        greengrass_v2_detector_score_threshold=0.4,
    )
    assert run.run.returncode == 0, run.describe()
    assert device_status(client)[0]["coreDeviceExecutionStatus"] == "QUEUED"

    # Back online: the nucleus asks for its pending job when it reconnects.
    fleet.write_endpoints(endpoints)
    deadline = time.monotonic() + 300
    while device_status(client)[0]["coreDeviceExecutionStatus"] in ("QUEUED", "IN_PROGRESS"):
        assert time.monotonic() < deadline, device_status(client)[0]
        time.sleep(3)
    assert device_status(client)[0]["coreDeviceExecutionStatus"] == "SUCCEEDED", device_status(client)[0]
    after = running_versions(fleet)
    assert after[DETECTOR] != before[DETECTOR], (before, after)
    answer = ask(mqtt_client, fleet)
    assert_sample_detections(answer)
    # The answer comes from the new version.
    assert answer["component"] == {"name": DETECTOR, "version": after[DETECTOR]}, answer


# --------------------------------------------------------------------------- 5. killed between two creates


def test_a_run_killed_between_component_and_deployment_converges_with_nothing_made_twice(
    mqtt_client, fleet, workdir, artefacts, env, client, endpoint
):
    before = aws_inventory(client)
    changed = {"greengrass_v2_detector_score_threshold": 0.45}  # a new detector version, deployed once
    # The fault proxy holds the run's CreateDeployment; the whole process tree is killed while it waits, so the
    # new component version exists and its deployment does not, and nothing of the run cleans up.
    plan = FaultPlan(rules=[FaultRule("hold", "POST", r"^/greengrass/v2/deployments$")])
    with FaultProxy(endpoint.url, plan) as proxy:
        inventories, extra = site_inputs(fleet, workdir, artefacts, "killed", **changed)
        run = start_site(
            SITE_PLAYBOOK, inventories, extra, dict(env, AWS_ENDPOINT_URL=proxy.url), workdir / "killed.log"
        )
        try:
            proxy.wait_for("hold", timeout=900)
        finally:
            killed = kill_process_tree(run.pid)
            run.wait(timeout=60)
    assert len(killed) > 2, f"only {killed} killed: the module process was not in the tree"
    left = aws_inventory(client)
    new_versions = sorted(set(left["components"][DETECTOR]) - set(before["components"][DETECTOR]))
    assert len(new_versions) == 1, (before["components"], left["components"])
    assert left["v2_deployments"] == before["v2_deployments"], "the kill point is before CreateDeployment"

    rerun = site(fleet, workdir, artefacts, env, "after-kill", **changed)
    assert rerun.run.returncode == 0, rerun.describe()
    after = aws_inventory(client)
    assert after["components"] == left["components"], "the re-run made the component version again"
    assert len(after["v2_deployments"]) == len(before["v2_deployments"]) + 1, after["v2_deployments"]
    unchanged = ("things", "thing_groups", "certificates", "policies", "groups", "definitions", "functions", "objects")
    assert {k: after[k] for k in unchanged} == {k: left[k] for k in unchanged}
    assert running_versions(fleet)[DETECTOR] == new_versions[0]
    assert ask(mqtt_client, fleet)["component"] == {"name": DETECTOR, "version": new_versions[0]}


# --------------------------------------------------------------------------- 6. another team's component


def test_a_component_another_team_deployed_keeps_running_after_site_yml(
    mqtt_client, fleet, workdir, artefacts, env, client
):
    theirs = "com.example.LogShipper"
    marker = "sleep 86399"  # their process, recognisable in the device's process list
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": theirs,
        "ComponentVersion": "1.0.0",
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": f"exec {marker}"}}],
    }
    greengrass = client("greengrassv2")
    greengrass.create_component_version(inlineRecipe=json.dumps(recipe).encode())
    group_arn = client("iot").describe_thing_group(thingGroupName=THING_GROUP)["thingGroupArn"]
    # Their deployment replaces ours with their component only, as a console user starting from scratch does: the
    # device uninstalls the detector.
    created = greengrass.create_deployment(
        targetArn=group_arn, deploymentName="log-shipping", components={theirs: {"componentVersion": "1.0.0"}}
    )
    deadline = time.monotonic() + 300
    while device_status(client)[0]["deploymentId"] != created["deploymentId"] or device_status(client)[0][
        "coreDeviceExecutionStatus"
    ] in ("QUEUED", "IN_PROGRESS"):
        assert time.monotonic() < deadline, device_status(client)[0]
        time.sleep(3)
    assert device_status(client)[0]["coreDeviceExecutionStatus"] == "SUCCEEDED", device_status(client)[0]
    assert set(running_versions(fleet)) == {theirs}, "their deployment did not uninstall the detector"

    run = site(fleet, workdir, artefacts, env, "after-another-team")
    assert run.run.returncode == 0, run.describe()
    [deployed] = run.run.results("Deployment to the thing group").values()
    assert deployed["changed"] and deployed["kept_components"] == [theirs], deployed
    assert set(running_versions(fleet)) == {DETECTOR, MODEL, theirs}
    processes = fleet.run(HOST, "ps -o user=,args= -u ggc_user").stdout
    assert marker in processes and "greengrass_v2_detector.py" in processes, processes
    assert_sample_detections(ask(mqtt_client, fleet))


# --------------------------------------------------------------------------- 7. the inventory from AWS IoT


def test_the_aws_iot_inventory_finds_the_core_device_and_ansible_reaches_it(
    first_deployment, fleet, client, env, workdir
):
    """The edgeml.greengrass.aws_iot inventory plugin alone (no inventory file of the bed) lists the device with what
    its nucleus reported, and Ansible reaches it at the address kept in its thing attribute."""
    address = fleet.hosts[HOST]
    client("iot").update_thing(thingName=HOST, attributePayload={"attributes": {"address": address}, "merge": True})
    ssh_args = f"-o UserKnownHostsFile={fleet.known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
    source = workdir / "fleet.aws_iot.yml"
    config = {
        "plugin": "edgeml.greengrass.aws_iot",
        "thing_groups": [THING_GROUP],
        "statuses": ["HEALTHY"],
        # How this bed's devices are reached over SSH (the user's own compose would read thing attributes).
        "compose": {
            "ansible_user": repr(DEVICE_USER),
            "ansible_ssh_private_key_file": repr(str(fleet.private_key)),
            "ansible_ssh_common_args": repr(ssh_args),
            "ansible_python_interpreter": repr("/usr/bin/python3"),
        },
    }
    source.write_text(json.dumps(config, indent=2) + "\n")
    environment = dict(env, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
    binaries = Path(sys.executable).parent

    listed = subprocess.run(
        [str(binaries / "ansible-inventory"), "-i", str(source), "--host", HOST],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    host = without_unsafe_markers(json.loads(listed.stdout))
    reported = client("greengrassv2").get_core_device(coreDeviceThingName=HOST)
    assert (host["greengrass_status"], host["greengrass_core_version"]) == ("HEALTHY", reported["coreVersion"]), host
    assert (host["greengrass_platform"], host["greengrass_architecture"]) == (
        reported["platform"],
        reported["architecture"],
    )
    assert host["ansible_host"] == address and THING_GROUP in host["iot_thing_groups"], host

    pinged = subprocess.run(
        [
            str(binaries / "ansible"),
            "greengrass_healthy",
            "-i",
            str(source),
            "-m",
            "ansible.builtin.command",
            "-a",
            "hostname",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    assert f"{HOST} | CHANGED | rc=0" in pinged.stdout, pinged.stdout
