"""The greengrass_v1_detector role's optional frame-capture function, against the local AWS endpoint.

Same test bed as ``test_greengrass_v1_detector.py`` (two ``ansible_connection: local`` hosts standing for
a GPU and a CPU device, the real inference package and a real small SSD archive); capture is switched on
per host through the inventory. Results are read back with boto3; "changed" is read from the PLAY RECAP.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.integration.test_greengrass_v1_detector import (
    FUNCTION,
    HOSTS,
    NVIDIA_DEVICES,
    Fleet,
    base_vars,
    fake_identity,
    nothing_in_aws,
    recap,
    run_playbook,
    write_bed,
)

pytestmark = pytest.mark.aws

CAPTURE = f"{FUNCTION}-capture"


def set_host_vars(inventory: Path, host: str, **variables) -> None:
    data = yaml.safe_load(inventory.read_text())
    data["edge_devices"]["hosts"][host].update(variables)
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))


def group_state(fleet: Fleet, host: str) -> dict:
    """The device's latest group version, definitions resolved (ids and ARNs of versions left out)."""
    version = fleet.group_version(host)
    functions = fleet.definition("function", version["FunctionDefinitionVersionArn"])["Functions"]
    resources = fleet.definition("resource", version["ResourceDefinitionVersionArn"])["Resources"]
    subscriptions = fleet.definition("subscription", version["SubscriptionDefinitionVersionArn"])["Subscriptions"]
    return {
        "functions": {f["FunctionArn"]: f["FunctionConfiguration"] for f in functions},
        "resources": {r["Name"]: r["ResourceDataContainer"] for r in resources},
        "routes": sorted((s["Source"], s["Subject"], s["Target"]) for s in subscriptions),
    }


def task_results(stdout: str, task: str) -> dict[str, str]:
    """Each host's status line (ok, changed, skipping, failed) under the one task whose name contains ``task``."""
    blocks = [block for block in stdout.split("\nTASK [")[1:] if task in block.split("]", 1)[0]]
    assert len(blocks) == 1, f"expected one task named like {task!r}, found {len(blocks)}"
    results = {}
    for line in blocks[0].splitlines()[1:]:
        match = re.match(r"^(ok|changed|skipping|failed|fatal): \[([^\]\s]+)", line)
        if match:
            results[match.group(2)] = match.group(1)
    return results


def lambda_names(fleet: Fleet) -> list[str]:
    return sorted(f["FunctionName"] for f in fleet.lam.list_functions()["Functions"])


def assert_no_change(proc, fleet: Fleet, before: dict, log: Path) -> None:
    assert proc.returncode == 0, f"run failed; log {log}\n{proc.stdout[-6000:]}"
    summary = recap(proc.stdout)
    assert {host: summary[host]["changed"] for host in HOSTS} == dict.fromkeys(HOSTS, 0), proc.stdout[-6000:]
    assert fleet.counts() == before


def test_capture_off_changes_nothing_and_on_one_host_adds_function_camera_and_wiring(
    tmp_path, sources, model_archive, clean_aws, ansible_env, aws_client
):
    fleet = Fleet(aws_client)
    inventory, playbook = write_bed(tmp_path, clean_aws.environment(), base_vars(tmp_path, sources, model_archive))

    # Capture off (the default): the detector's group only, and no capture Lambda in the account.
    first = run_playbook(ansible_env, inventory, playbook, tmp_path / "run1.log")
    assert first.returncode == 0, f"first run failed; log {tmp_path / 'run1.log'}\n{first.stdout[-6000:]}"
    assert lambda_names(fleet) == [FUNCTION]
    detector_arn = fleet.lam.get_alias(FunctionName=FUNCTION, Name="live")["AliasArn"]
    off = {host: group_state(fleet, host) for host in HOSTS}
    for host, state in off.items():
        assert list(state["functions"]) == [detector_arn]
        assert not [name for name in state["resources"] if name.startswith(("camera", "capture"))]
        assert state["routes"] == sorted(
            [("cloud", "itest/frames", detector_arn), (detector_arn, "itest/detections", "cloud")]
        ), host
    before = fleet.counts()
    again = run_playbook(ansible_env, inventory, playbook, tmp_path / "run2.log")
    assert_no_change(again, fleet, before, tmp_path / "run2.log")

    # On for the CPU device only, with its camera.
    set_host_vars(
        inventory,
        "cpu-device",
        greengrass_v1_detector_capture_enabled=True,
        greengrass_v1_detector_capture_source="/dev/video0",
        greengrass_v1_detector_capture_rate=4,
    )
    on = run_playbook(ansible_env, inventory, playbook, tmp_path / "run3.log")
    assert on.returncode == 0, f"capture run failed; log {tmp_path / 'run3.log'}\n{on.stdout[-6000:]}"
    summary = recap(on.stdout)
    # The fleet-wide capture Lambda and its alias are made once, by the play's first host (its fleet host); the
    # other device skips the fleet-wide step.
    assert summary["gpu-device"]["changed"] == 2 and summary["cpu-device"]["changed"] == 2, summary
    assert task_results(on.stdout, "Capture Lambda function") == {"gpu-device": "changed", "cpu-device": "skipping"}
    assert task_results(on.stdout, "Greengrass group with") == {"gpu-device": "ok", "cpu-device": "changed"}
    assert task_results(on.stdout, "Deploy the group") == {"gpu-device": "ok", "cpu-device": "changed"}
    counts = fleet.counts()
    assert counts["lambda_versions"] == before["lambda_versions"], "the detector Lambda is untouched"
    assert counts["gpu-device.group_versions"] == before["gpu-device.group_versions"]
    assert counts["gpu-device.deployments"] == before["gpu-device.deployments"]
    assert counts["cpu-device.group_versions"] == before["cpu-device.group_versions"] + 1
    assert counts["cpu-device.deployments"] == before["cpu-device.deployments"] + 1
    assert group_state(fleet, "gpu-device") == off["gpu-device"]

    # The capture Lambda: the detector's package with the capture handler, one version, the alias on it.
    assert lambda_names(fleet) == sorted([FUNCTION, CAPTURE])
    capture_config = fleet.lam.get_function(FunctionName=CAPTURE)["Configuration"]
    assert capture_config["Handler"] == "greengrass_frame_capture.function_handler"
    assert capture_config["Runtime"] == "python3.8"
    detector_code = fleet.lam.get_function(FunctionName=FUNCTION)["Configuration"]["CodeSha256"]
    assert capture_config["CodeSha256"] == detector_code
    capture_alias = fleet.lam.get_alias(FunctionName=CAPTURE, Name="live")
    assert capture_alias["FunctionVersion"] == "1"
    capture_arn = capture_alias["AliasArn"]

    state = group_state(fleet, "cpu-device")
    assert state["functions"][detector_arn] == off["cpu-device"]["functions"][detector_arn], "detector unchanged"
    capture = state["functions"][capture_arn]
    assert capture["Pinned"] is True
    assert capture["Environment"]["Variables"] == {
        "MODEL_PATH": "/ml/od/deploy_model_algo_1",
        "SCORE_THRESHOLD": "0.5",
        "MAX_DETECTIONS": "100",
        "DETECTOR_CONTEXT": "auto",
        "CLASS_LABELS": "blue_box,yellow_box",
        "OUTPUT_TOPIC": "itest/detections",
        "CAPTURE_SOURCE": "/dev/video0",
        "CAPTURE_RATE": "4",
        "CAPTURE_MODE": "inprocess",
        "CAPTURE_RETRY_MAX_S": "30",
        "CAPTURE_LAMBDA_VERSION": "1",
    }
    policies = {p["ResourceId"]: p["Permission"] for p in capture["Environment"]["ResourceAccessPolicies"]}
    assert policies == {"ssd-model": "ro", "camera-video0": "rw"}
    camera = state["resources"].pop("camera-video0")["LocalDeviceResourceData"]
    assert camera["SourcePath"] == "/dev/video0" and camera["GroupOwnerSetting"]["AutoAddGroupOwner"] is True
    assert state["resources"] == off["cpu-device"]["resources"]
    assert state["routes"] == sorted(off["cpu-device"]["routes"] + [(capture_arn, "itest/detections", "cloud")])

    # Again: nothing changes anywhere.
    before = fleet.counts()
    again = run_playbook(ansible_env, inventory, playbook, tmp_path / "run4.log")
    assert_no_change(again, fleet, before, tmp_path / "run4.log")
    assert [v["Version"] for v in fleet.lam.list_versions_by_function(FunctionName=CAPTURE)["Versions"]] == [
        "$LATEST",
        "1",
    ]
    # Check mode on the converged fleet predicts no change either.
    checked = run_playbook(ansible_env, inventory, playbook, tmp_path / "check.log", check=True)
    assert_no_change(checked, fleet, before, tmp_path / "check.log")

    # The GPU device captures an RTSP stream and hands frames over as files: no camera resource, a shared
    # volume (written by capture, read by the detector), frames' paths routed to the detector.
    set_host_vars(
        inventory,
        "gpu-device",
        greengrass_v1_detector_capture_enabled=True,
        greengrass_v1_detector_capture_source="rtsp://camera.local/stream1",
        greengrass_v1_detector_capture_mode="files",
    )
    files = run_playbook(ansible_env, inventory, playbook, tmp_path / "run5.log")
    assert files.returncode == 0, f"files run failed; log {tmp_path / 'run5.log'}\n{files.stdout[-6000:]}"
    summary = recap(files.stdout)
    assert summary["cpu-device"]["changed"] == 0 and summary["gpu-device"]["changed"] == 2, summary
    assert task_results(files.stdout, "Greengrass group with") == {"gpu-device": "changed", "cpu-device": "ok"}
    state = group_state(fleet, "gpu-device")
    volume = state["resources"].pop("capture-frames")["LocalVolumeResourceData"]
    assert volume["SourcePath"] == volume["DestinationPath"] == "/var/lib/edgeml/frames"
    assert state["resources"] == off["gpu-device"]["resources"]
    capture = state["functions"][capture_arn]
    variables = capture["Environment"]["Variables"]
    assert variables["CAPTURE_MODE"] == "files" and variables["CAPTURE_FRAME_TOPIC"] == "itest/frames"
    assert variables["CAPTURE_SOURCE"] == "rtsp://camera.local/stream1" and "MODEL_PATH" not in variables
    policies = {p["ResourceId"]: p["Permission"] for p in capture["Environment"]["ResourceAccessPolicies"]}
    assert policies == {"capture-frames": "rw"}
    detector = state["functions"][detector_arn]["Environment"]
    policies = {p["ResourceId"]: p["Permission"] for p in detector["ResourceAccessPolicies"]}
    assert policies == {"ssd-model": "ro", "capture-frames": "ro", **{Path(d).name: "rw" for d in NVIDIA_DEVICES}}
    assert state["routes"] == sorted(
        off["gpu-device"]["routes"]
        + [(capture_arn, "itest/detections", "cloud"), (capture_arn, "itest/frames", detector_arn)]
    )
    before = fleet.counts()
    again = run_playbook(ansible_env, inventory, playbook, tmp_path / "run6.log")
    assert_no_change(again, fleet, before, tmp_path / "run6.log")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"greengrass_v1_detector_capture_source": "camera0"}, "greengrass_v1_detector_capture_source must be"),
        ({"greengrass_v1_detector_capture_source": "/dev/sda"}, "greengrass_v1_detector_capture_source must be"),
        ({"greengrass_v1_detector_capture_rate": 0}, "greengrass_v1_detector_capture_rate frames per second"),
        (
            {"greengrass_v1_detector_capture_function_name": FUNCTION},
            "greengrass_v1_detector_capture_function_name 1-64 of [a-zA-Z0-9_-] and not the detector's name",
        ),
        (
            {"greengrass_v1_detector_capture_mode": "files", "greengrass_v1_detector_input_topic": "itest/+"},
            "greengrass_v1_detector_input_topic a topic without wildcards",
        ),
    ],
    ids=["not-a-source", "not-a-camera", "zero-rate", "same-name-as-detector", "files-into-a-filter"],
)
def test_bad_capture_input_fails_in_preflight(
    tmp_path, sources, model_archive, clean_aws, ansible_env, aws_client, overrides, message
):
    fleet = Fleet(aws_client)
    group_vars = fake_identity(base_vars(tmp_path, sources, model_archive))
    inventory, playbook = write_bed(tmp_path, clean_aws.environment(), group_vars, identity=False)
    proc = run_playbook(
        ansible_env,
        inventory,
        playbook,
        tmp_path / "bad.log",
        {"greengrass_v1_detector_capture_enabled": True, **overrides},
    )
    assert proc.returncode != 0, proc.stdout[-4000:]
    assert message in proc.stdout, proc.stdout[-4000:]
    assert not (tmp_path / "build" / "detector.zip").exists(), "packaging ran before preflight passed"
    assert nothing_in_aws(fleet) == {"functions": [], "groups": [], "buckets": [], "roles": []}
