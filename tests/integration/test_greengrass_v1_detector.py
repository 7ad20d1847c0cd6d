"""The greengrass_v1_detector role against the local AWS endpoint (moto server with the test bed's fixes).

Two inventory hosts with ``ansible_connection: local`` stand for a GPU device and a CPU device; the role's
AWS work runs on the controller either way, so no device needs to boot. Each device first gets its
identity from ``edgeml.greengrass.iot_device_identity`` (AWS-generated keys, since nothing here is a
device), then the role packages the real inference code, publishes the Lambda, uploads a real small
MXNet SSD model (``tests/inference/small_ssd.py``) packed as ``.tar.gz`` and gives each device its group.
Results are read back with boto3; "changed" is read from the PLAY RECAP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from testbed.fault_proxy import FaultPlan, FaultProxy, FaultRule
from tests.integration.detector_bed import write_detector_bed

pytestmark = pytest.mark.aws

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLE_DIR = REPO_ROOT / "roles" / "greengrass_v1_detector"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
PLAYBOOK_TIMEOUT_S = 600

FUNCTION = "itest-object-detector"
BUCKET = "itest-detector-models"
NVIDIA_DEVICES = ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
HOSTS = {"gpu-device": True, "cpu-device": False}
RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def write_bed(tmp_path: Path, aws_env: dict, group_vars: dict, identity: bool = True) -> tuple[Path, Path]:
    # The GPU device is known as one by the nvidia_driver_cuda role's fact, the role's default source.
    hosts = {
        name: {"ansible_connection": "local", **({"nvidia_driver_cuda_gpu_present": True} if gpu else {})}
        for name, gpu in HOSTS.items()
    }
    tasks = []
    if identity:
        tasks += [
            {
                "name": "Device identity",
                "edgeml.greengrass.iot_device_identity": {
                    "thing_name": "{{ inventory_hostname }}",
                    "certificate_mode": "aws_generated",
                    "topic_prefixes": ["blog/infer/", "itest/"],
                },
                "delegate_to": "localhost",
                "register": "identity",
                "no_log": True,
                "tags": ["always"],
            },
            {
                "name": "Identity fact, as the iot_device_credentials role leaves it",
                "ansible.builtin.set_fact": {
                    "iot_device_credentials": {
                        "thing_arn": "{{ identity.thing.arn }}",
                        "certificate_arn": "{{ identity.certificate.arn }}",
                    }
                },
                "tags": ["always"],
            },
        ]
    # Imported (static), so the role's phase tags select its tasks.
    tasks.append({"name": "Detector", "ansible.builtin.import_role": {"name": str(ROLE_DIR)}})
    return write_detector_bed(
        tmp_path, aws_env, hosts, group_vars, tasks, "Object detector into each device's Greengrass V1 group"
    )


def run_playbook(
    env: dict,
    inventory: Path,
    playbook: Path,
    log: Path,
    extra_vars: dict | None = None,
    check: bool = False,
    tags: str | None = None,
):
    command = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook)] + (["--check", "--diff"] if check else [])
    if tags:
        command += ["--tags", tags]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    proc = subprocess.run(
        command,
        env=dict(env, ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_NOCOLOR="1"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=PLAYBOOK_TIMEOUT_S,
        check=False,
    )
    log.write_text(proc.stdout + proc.stderr)
    return proc


def recap(stdout: str) -> dict[str, dict[str, int]]:
    return {
        host: {"ok": int(ok), "changed": int(changed), "unreachable": int(unreachable), "failed": int(failed)}
        for host, ok, changed, unreachable, failed in RECAP_RE.findall(stdout)
    }


def base_vars(tmp_path: Path, sources: Path, model_archive: Path) -> dict:
    return {
        "greengrass_v1_detector_function_name": FUNCTION,
        "greengrass_v1_detector_source_dir": str(sources),
        "greengrass_v1_detector_package_path": str(tmp_path / "build" / "detector.zip"),
        "greengrass_v1_detector_model_archive": str(model_archive),
        "greengrass_v1_detector_model_bucket": BUCKET,
        "greengrass_v1_detector_class_labels": ["blue_box", "yellow_box"],
        "greengrass_v1_detector_input_topic": "itest/frames",
        "greengrass_v1_detector_output_topic": "itest/detections",
        # moto never plays the core: tests that wait tell the test bed what "the device" reports.
        "greengrass_v1_detector_deployment_wait": False,
    }


def device_reports(endpoint_url: str, status: str, **details) -> None:
    """Test-bed control: what the (absent) Greengrass core reports for every deployment from now on."""
    request = urllib.request.Request(  # noqa: S310 - the local test endpoint, http only
        f"{endpoint_url}/moto-api/static/greengrass/deployment-outcome",
        data=json.dumps({"status": status, **details}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test endpoint
        assert response.status == 201


class Fleet:
    """Counts and reads of what the role made, through boto3 on the endpoint."""

    def __init__(self, aws_client):
        self.lam = aws_client("lambda")
        self.gg = aws_client("greengrass")
        self.s3 = aws_client("s3")
        self.iam = aws_client("iam")

    def lambda_versions(self) -> list[dict]:
        versions = self.lam.list_versions_by_function(FunctionName=FUNCTION)["Versions"]
        return [v for v in versions if v["Version"] != "$LATEST"]

    def group(self, host: str) -> dict:
        groups = [g for g in self.gg.list_groups()["Groups"] if g["Name"] == f"{host}-group"]
        assert len(groups) == 1, f"expected one group named {host}-group, found {groups}"
        return groups[0]

    def group_version(self, host: str) -> dict:
        group = self.group(host)
        return self.gg.get_group_version(GroupId=group["Id"], GroupVersionId=group["LatestVersion"])["Definition"]

    def group_versions(self, host: str) -> int:
        return len(self.gg.list_group_versions(GroupId=self.group(host)["Id"])["Versions"])

    def deployments(self, host: str) -> int:
        return len(self.gg.list_deployments(GroupId=self.group(host)["Id"])["Deployments"])

    def counts(self) -> dict:
        result = {"lambda_versions": len(self.lambda_versions())}
        for host in HOSTS:
            result[f"{host}.group_versions"] = self.group_versions(host)
            result[f"{host}.deployments"] = self.deployments(host)
        return result

    def definition(self, kind: str, arn: str) -> dict:
        definition_id = arn.split("/definition/")[1].split("/")[1]
        version_id = arn.rsplit("/", 1)[1]
        getter = getattr(self.gg, f"get_{kind}_definition_version")
        key = {"resource": "ResourceDefinitionId", "function": "FunctionDefinitionId"}.get(
            kind, "SubscriptionDefinitionId"
        )
        return getter(**{key: definition_id, f"{kind.capitalize()}DefinitionVersionId": version_id})["Definition"]


def build_package(env: dict, sources: Path, dest: Path) -> subprocess.CompletedProcess:
    """The role's packaging module, run alone on the controller."""
    arguments = {
        "source_dir": str(sources),
        "python_packages": ["greengrasssdk"],
        "exclude": ["ruff.toml"],
        "dest": str(dest),
    }
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "localhost",
            "-m",
            "edgeml.greengrass.lambda_package",
            "-a",
            json.dumps(arguments),
            "-e",
            json.dumps({"ansible_python_interpreter": sys.executable}),
        ],
        env=dict(env, ANSIBLE_NOCOLOR="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_package_is_reproducible(tmp_path, sources, ansible_env):
    """Two builds from the same sources (different mtimes) give the same bytes; the zip holds what it should."""
    builds = []
    for attempt in range(2):
        for path in sources.rglob("*"):
            path.touch()  # new mtimes each time: they must not reach the zip
        dest = tmp_path / f"build{attempt}" / "detector.zip"
        assert "CHANGED" in build_package(ansible_env, sources, dest).stdout, "a new zip must be reported as changed"
        builds.append(dest)

    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in builds]
    assert digests[0] == digests[1], "same sources gave different zips"
    with zipfile.ZipFile(builds[0]) as archive:
        infos = archive.infolist()
        archive.extractall(tmp_path / "unpacked")  # noqa: S202 - our own zip, names checked below
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert "greengrass_object_detector.py" in names and "object_detector.py" in names
    assert "greengrasssdk/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n == "ruff.toml" or "mxnet" in n]
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {(info.external_attr >> 16) & 0o7777 for info in infos} == {0o644}

    # The unpacked zip is importable as Lambda would load it (MXNet/OpenCV from this Python, like a device's).
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import greengrass_object_detector as h, greengrasssdk; "
            "assert callable(h.function_handler); print(greengrasssdk.__file__)",
        ],
        cwd=tmp_path / "unpacked",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "unpacked")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(tmp_path / "unpacked" / "greengrasssdk"))

    # Same sources again: not rewritten, not changed. One changed byte: changed, and a different hash.
    assert "CHANGED" not in build_package(ansible_env, sources, builds[1]).stdout
    assert hashlib.sha256(builds[1].read_bytes()).hexdigest() == digests[1]
    (sources / "object_detector.py").write_text((sources / "object_detector.py").read_text() + "\n")
    assert "CHANGED" in build_package(ansible_env, sources, builds[1]).stdout
    assert hashlib.sha256(builds[1].read_bytes()).hexdigest() != digests[1]


def test_detector_groups_idempotent_and_code_change(
    tmp_path, sources, model_archive, clean_aws, ansible_env, aws_client
):
    fleet = Fleet(aws_client)
    group_vars = base_vars(tmp_path, sources, model_archive)
    # The role waits for the outcome, as on a real fleet; the test bed plays the devices' answer.
    group_vars.update(greengrass_v1_detector_deployment_wait=True, greengrass_v1_detector_deployment_wait_timeout=60)
    device_reports(clean_aws.url, "Success")
    inventory, playbook = write_bed(tmp_path, clean_aws.environment(), group_vars)

    first = run_playbook(ansible_env, inventory, playbook, tmp_path / "run1.log")
    assert first.returncode == 0, f"first run failed; log {tmp_path / 'run1.log'}\n{first.stdout[-6000:]}"
    assert set(recap(first.stdout)) >= set(HOSTS)

    # The Lambda: python3.8, one published version, the alias on it, the code is this package.
    config = fleet.lam.get_function(FunctionName=FUNCTION)["Configuration"]
    assert config["Runtime"] == "python3.8"
    assert config["Handler"] == "greengrass_object_detector.function_handler"
    versions = fleet.lambda_versions()
    assert [v["Version"] for v in versions] == ["1"]
    alias = fleet.lam.get_alias(FunctionName=FUNCTION, Name="live")
    assert alias["FunctionVersion"] == "1"
    package = (tmp_path / "build" / "detector.zip").read_bytes()
    assert versions[0]["CodeSha256"] == base64.b64encode(hashlib.sha256(package).digest()).decode()

    # The model object is the archive.
    body = fleet.s3.get_object(Bucket=BUCKET, Key="models/small_ssd.tar.gz")["Body"].read()
    assert body == model_archive.read_bytes()
    model_uri = f"s3://{BUCKET}/models/small_ssd.tar.gz"

    for host, gpu in HOSTS.items():
        version = fleet.group_version(host)
        resources = fleet.definition("resource", version["ResourceDefinitionVersionArn"])["Resources"]
        by_name = {r["Name"]: r for r in resources}
        model = by_name.pop("ssd-model")["ResourceDataContainer"]["S3MachineLearningModelResourceData"]
        assert model["S3Uri"] == model_uri and model["DestinationPath"] == "/ml/od/"
        if gpu:
            assert sorted(by_name) == sorted(Path(d).name for d in NVIDIA_DEVICES)
            for name, resource in by_name.items():
                device = resource["ResourceDataContainer"]["LocalDeviceResourceData"]
                assert device["SourcePath"] == f"/dev/{name}"
                assert device["GroupOwnerSetting"]["AutoAddGroupOwner"] is True
        else:
            assert by_name == {}, f"CPU device got device resources {sorted(by_name)}"

        functions = fleet.definition("function", version["FunctionDefinitionVersionArn"])["Functions"]
        assert len(functions) == 1
        function = functions[0]
        assert function["FunctionArn"] == alias["AliasArn"]
        settings = function["FunctionConfiguration"]
        assert settings["Pinned"] is True
        assert settings["MemorySize"] == 2097152 and settings["Timeout"] == 60
        environment = settings["Environment"]
        assert environment["Variables"] == {
            "MODEL_PATH": "/ml/od/deploy_model_algo_1",
            "SCORE_THRESHOLD": "0.5",
            "MAX_DETECTIONS": "100",
            "DETECTOR_CONTEXT": "auto",
            "OUTPUT_TOPIC": "itest/detections",
            "CLASS_LABELS": "blue_box,yellow_box",
            "DETECTOR_LAMBDA_VERSION": "1",
        }
        policies = {p["ResourceId"]: p["Permission"] for p in environment["ResourceAccessPolicies"]}
        expected = {"ssd-model": "ro"}
        if gpu:
            expected.update({Path(d).name: "rw" for d in NVIDIA_DEVICES})
        assert policies == expected

        subscriptions = fleet.definition("subscription", version["SubscriptionDefinitionVersionArn"])["Subscriptions"]
        routes = sorted((s["Source"], s["Subject"], s["Target"]) for s in subscriptions)
        assert routes == sorted(
            [("cloud", "itest/frames", alias["AliasArn"]), (alias["AliasArn"], "itest/detections", "cloud")]
        )
        assert fleet.deployments(host) == 1

    # Second run: nothing changes, nothing new in AWS.
    before = fleet.counts()
    second = run_playbook(ansible_env, inventory, playbook, tmp_path / "run2.log")
    assert second.returncode == 0, f"second run failed; log {tmp_path / 'run2.log'}\n{second.stdout[-6000:]}"
    summary = recap(second.stdout)
    assert {host: summary[host]["changed"] for host in HOSTS} == dict.fromkeys(HOSTS, 0), second.stdout[-6000:]
    assert fleet.counts() == before
    assert fleet.lam.get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"] == "1"

    # Check mode on the unchanged fleet predicts no change and writes nothing.
    checked = run_playbook(ansible_env, inventory, playbook, tmp_path / "check.log", check=True)
    assert checked.returncode == 0, f"check run failed; log {tmp_path / 'check.log'}\n{checked.stdout[-6000:]}"
    summary = recap(checked.stdout)
    assert {host: summary[host]["changed"] for host in HOSTS} == dict.fromkeys(HOSTS, 0), checked.stdout[-6000:]
    assert fleet.counts() == before

    # Only the group and deploy phases (the alias is read from AWS then): still nothing to change.
    phases = run_playbook(
        ansible_env,
        inventory,
        playbook,
        tmp_path / "tags.log",
        tags="greengrass_v1_detector_group,greengrass_v1_detector_deploy",
    )
    assert phases.returncode == 0, f"tagged run failed; log {tmp_path / 'tags.log'}\n{phases.stdout[-6000:]}"
    summary = recap(phases.stdout)
    assert {host: summary[host]["changed"] for host in HOSTS} == dict.fromkeys(HOSTS, 0), phases.stdout[-6000:]
    assert "Greengrass group with the detector Lambda" in phases.stdout and "Lambda function" not in phases.stdout
    assert fleet.counts() == before

    # A change to the code: exactly one new Lambda version, the alias follows it, and each group gets one new
    # version and one new deployment (a core resolves the alias only when a deployment reaches it).
    with (sources / "greengrass_object_detector.py").open("a") as code:
        code.write("\n# changed by the test\n")
    # Check mode sees it coming (new version, new group versions, new deployments) and writes nothing.
    predicted = run_playbook(ansible_env, inventory, playbook, tmp_path / "check-change.log", check=True)
    assert predicted.returncode == 0, predicted.stdout[-6000:]
    summary = recap(predicted.stdout)
    assert all(summary[host]["changed"] >= 2 for host in HOSTS), summary  # group and deployment
    assert fleet.counts() == before
    assert '"DETECTOR_LAMBDA_VERSION": "2"' in predicted.stdout or "DETECTOR_LAMBDA_VERSION: '2'" in predicted.stdout
    third = run_playbook(ansible_env, inventory, playbook, tmp_path / "run3.log")
    assert third.returncode == 0, f"third run failed; log {tmp_path / 'run3.log'}\n{third.stdout[-6000:]}"
    after = fleet.counts()
    assert after["lambda_versions"] == before["lambda_versions"] + 1
    assert fleet.lam.get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"] == "2"
    for host in HOSTS:
        assert after[f"{host}.group_versions"] == before[f"{host}.group_versions"] + 1
        assert after[f"{host}.deployments"] == before[f"{host}.deployments"] + 1

    # A change to the function's environment on the core: one new group version and deployment per device.
    fourth = run_playbook(
        ansible_env, inventory, playbook, tmp_path / "run4.log", {"greengrass_v1_detector_score_threshold": 0.7}
    )
    assert fourth.returncode == 0, f"fourth run failed; log {tmp_path / 'run4.log'}\n{fourth.stdout[-6000:]}"
    final = fleet.counts()
    assert final["lambda_versions"] == after["lambda_versions"]
    for host in HOSTS:
        assert final[f"{host}.group_versions"] == after[f"{host}.group_versions"] + 1
        assert final[f"{host}.deployments"] == after[f"{host}.deployments"] + 1
        functions = fleet.definition("function", fleet.group_version(host)["FunctionDefinitionVersionArn"])
        assert functions["Functions"][0]["FunctionConfiguration"]["Environment"]["Variables"]["SCORE_THRESHOLD"] == (
            "0.7"
        )


def fake_identity(group_vars: dict) -> dict:
    """Well-formed identity inputs without creating anything, for runs that must write nothing at all."""
    group_vars["greengrass_v1_detector_thing_arn"] = "arn:aws:iot:us-east-1:123456789012:thing/{{ inventory_hostname }}"
    group_vars["greengrass_v1_detector_certificate_arn"] = "arn:aws:iot:us-east-1:123456789012:cert/" + "a" * 64
    return group_vars


def nothing_in_aws(fleet: Fleet) -> dict:
    return {
        "functions": fleet.lam.list_functions()["Functions"],
        "groups": fleet.gg.list_groups()["Groups"],
        "buckets": fleet.s3.list_buckets()["Buckets"],
        "roles": fleet.iam.list_roles()["Roles"],
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"greengrass_v1_detector_model_s3_uri": "s3://elsewhere/model.tar.gz"},
            "Set exactly one of greengrass_v1_detector_model_archive",
        ),
        ({"greengrass_v1_detector_output_topic": ""}, "greengrass_v1_detector_output_topic a non-empty topic"),
        ({"greengrass_v1_detector_input_topic": "a/#/b"}, "greengrass_v1_detector_input_topic must be a non-empty"),
        ({"greengrass_v1_detector_function_memory_size": 1024}, "greengrass_v1_detector_function_memory_size"),
        ({"greengrass_v1_detector_function_alias": "42"}, "greengrass_v1_detector_function_alias 1-128"),
        ({"greengrass_v1_detector_thing_arn": "thing/gpu-device"}, "greengrass_v1_detector_thing_arn must be"),
        ({"greengrass_v1_detector_model_prefix": "other_model"}, "missing other_model-symbol.json, other_model-0000"),
        ({"greengrass_v1_detector_model_archive": "/nonexistent/model.tar.gz"}, "not found"),
    ],
    ids=[
        "two-model-sources",
        "empty-output-topic",
        "bad-input-filter",
        "memory",
        "numeric-alias",
        "thing-arn",
        "archive-without-checkpoint",
        "missing-archive",
    ],
)
def test_bad_input_fails_in_preflight(
    tmp_path, sources, model_archive, clean_aws, ansible_env, aws_client, overrides, message
):
    fleet = Fleet(aws_client)
    group_vars = fake_identity(base_vars(tmp_path, sources, model_archive))
    inventory, playbook = write_bed(tmp_path, clean_aws.environment(), group_vars, identity=False)
    proc = run_playbook(ansible_env, inventory, playbook, tmp_path / "bad.log", overrides)
    assert proc.returncode != 0, proc.stdout[-4000:]
    assert message in proc.stdout, proc.stdout[-4000:]
    summary = recap(proc.stdout)
    assert all(summary[host]["failed"] == 1 for host in HOSTS), summary
    assert not (tmp_path / "build" / "detector.zip").exists(), "packaging ran before preflight passed"
    assert nothing_in_aws(fleet) == {"functions": [], "groups": [], "buckets": [], "roles": []}


def test_check_mode_on_an_empty_account_writes_nothing(
    tmp_path, sources, model_archive, clean_aws, ansible_env, aws_client
):
    fleet = Fleet(aws_client)
    group_vars = fake_identity(base_vars(tmp_path, sources, model_archive))
    inventory, playbook = write_bed(tmp_path, clean_aws.environment(), group_vars, identity=False)
    proc = run_playbook(ansible_env, inventory, playbook, tmp_path / "check.log", check=True)
    assert proc.returncode == 0, proc.stdout[-6000:]
    summary = recap(proc.stdout)
    # Every device's group would be created: each host predicts a change.
    assert all(summary[host]["changed"] >= 1 for host in HOSTS), summary
    assert nothing_in_aws(fleet) == {"functions": [], "groups": [], "buckets": [], "roles": []}


def test_failed_deployment_fails_the_host_with_the_device_error(
    tmp_path, sources, model_archive, clean_aws, ansible_env, aws_client
):
    fleet = Fleet(aws_client)
    group_vars = base_vars(tmp_path, sources, model_archive)
    group_vars.update(greengrass_v1_detector_deployment_wait=True, greengrass_v1_detector_deployment_wait_timeout=60)
    device_reports(
        clean_aws.url,
        "Failure",
        error_message="Greengrass deployment error: unable to download the artifact model-arn",
        error_details=[{"DetailedErrorCode": "GG-40", "DetailedErrorMessage": "model download failed"}],
    )
    inventory, playbook = write_bed(tmp_path, clean_aws.environment(), group_vars)
    proc = run_playbook(ansible_env, inventory, playbook, tmp_path / "failure.log")
    assert proc.returncode != 0, proc.stdout[-6000:]
    summary = recap(proc.stdout)
    assert all(summary[host]["failed"] == 1 for host in HOSTS), summary
    assert "unable to download the artifact model-arn" in proc.stdout and "GG-40" in proc.stdout
    for host in HOSTS:
        assert fleet.deployments(host) == 1


def test_a_failed_fleet_step_fails_every_device_by_name(
    tmp_path, sources, model_archive, clean_aws, ansible_env, aws_client
):
    """Lambda refuses the function for good (its own bad-request error, through the fault proxy): the fleet host fails
    with Lambda's error and the other device fails right after, naming it; neither leaves the run silently (with
    run_once, ansible-core counted only the first host and dropped the other from the recap)."""
    fleet = Fleet(aws_client)
    plan = FaultPlan(rules=[FaultRule("reject", "POST", r"^/2015-03-31/functions/?$")])
    with FaultProxy(clean_aws.url, plan) as proxy:
        env = dict(clean_aws.environment(), AWS_ENDPOINT_URL=proxy.url)
        inventory, playbook = write_bed(tmp_path, env, base_vars(tmp_path, sources, model_archive))
        proc = run_playbook(
            dict(ansible_env, AWS_ENDPOINT_URL=proxy.url), inventory, playbook, tmp_path / "refused.log"
        )
    assert [entry.fault for entry in plan.log] == ["reject"], plan.log
    assert proc.returncode != 0
    summary = recap(proc.stdout)
    assert {host: summary[host]["failed"] for host in HOSTS} == dict.fromkeys(HOSTS, 1), proc.stdout[-6000:]
    fleet_host, other = list(HOSTS)
    assert "InvalidParameterValueException" in proc.stdout
    assert f"{other}: not provisioned - the fleet-wide step" in proc.stdout and f"failed on {fleet_host}" in proc.stdout
    assert [g["Name"] for g in fleet.gg.list_groups()["Groups"]] == []
