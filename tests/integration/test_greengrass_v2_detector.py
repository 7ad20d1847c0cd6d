"""The greengrass_v2_detector role against the local AWS endpoint (moto + the test bed's Greengrass V2 emulation).

Two inventory hosts with ``ansible_connection: local`` stand for two core devices; the role's AWS work runs on
the controller either way, so no device needs to boot. Each device first gets its identity from
``edgeml.greengrass.iot_device_identity`` (AWS-generated keys, since nothing here is a device) in the fleet's
thing group, allowed to assume the role alias. The role then makes the token exchange role and alias, uploads a
real small MXNet SSD model and the real inference code, makes the model and detector components and deploys
them to the thing group. Results are read back with boto3; "changed" is read from the PLAY RECAP.

Nothing plays the Greengrass nucleus here: the tests register the core devices and report their deployment
status through the emulation's test-bed controls (``/moto-api/static/greengrassv2/...``), as a nucleus would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from testbed.fault_proxy import FaultPlan, FaultProxy, FaultRule
from testbed.greengrassv2_emulation import control
from tests.integration.detector_bed import write_detector_bed
from tests.integration.test_greengrass_v1_detector import recap, run_playbook

pytestmark = pytest.mark.aws

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLE_DIR = REPO_ROOT / "roles" / "greengrass_v2_detector"

BUCKET = "itest-gg2-detector"
GROUP = "itest-detectors"
ALIAS = "itest-TokenExchangeRoleAlias"
ROLE = "itest-TokenExchangeRole"
MODEL_COMPONENT = "com.edgeml.itest.SsdModel"
DETECTOR_COMPONENT = "com.edgeml.itest.ObjectDetector"
HOSTS = ["core-a", "core-b"]


def write_bed(
    tmp_path: Path, aws_env: dict, group_vars: dict, hosts: dict[str, dict] | None = None
) -> tuple[Path, Path]:
    """Inventory and playbook; ``hosts`` (name: host vars) replaces the two local hosts."""
    tasks = [
        {"name": "Reach the device", "ansible.builtin.ping": {}, "tags": ["always"]},
        {
            "name": "Device identity in the fleet's group, allowed the role alias",
            "edgeml.greengrass.iot_device_identity": {
                "thing_name": "{{ inventory_hostname }}",
                "certificate_mode": "aws_generated",
                "greengrass_v1_core": False,
                "thing_groups": [GROUP],
                "create_thing_groups": True,
                "token_exchange_role_aliases": [ALIAS],
            },
            "delegate_to": "localhost",
            "register": "identity",
            "no_log": True,
            "tags": ["always"],
        },
        {
            "name": "Identity fact, as the iot_device_credentials role leaves it",
            "ansible.builtin.set_fact": {"iot_device_credentials": {"thing_name": "{{ inventory_hostname }}"}},
            "tags": ["always"],
        },
        {"name": "Detector", "ansible.builtin.import_role": {"name": str(ROLE_DIR)}},
    ]
    hosts = hosts or {name: {"ansible_connection": "local"} for name in HOSTS}
    play_name = "Object detector as Greengrass V2 components"
    return write_detector_bed(tmp_path, aws_env, hosts, group_vars, tasks, play_name)


def base_vars(tmp_path: Path, sources: Path, model_archive: Path) -> dict:
    return {
        "greengrass_v2_detector_artifact_bucket": BUCKET,
        "greengrass_v2_detector_thing_group": GROUP,
        "greengrass_v2_detector_role_alias": ALIAS,
        "greengrass_v2_detector_token_exchange_role_name": ROLE,
        "greengrass_v2_detector_model_component_name": MODEL_COMPONENT,
        "greengrass_v2_detector_component_name": DETECTOR_COMPONENT,
        "greengrass_v2_detector_source_dir": str(sources),
        "greengrass_v2_detector_package_path": str(tmp_path / "build" / "inference-code.zip"),
        "greengrass_v2_detector_model_archive": str(model_archive),
        "greengrass_v2_detector_class_labels": ["blue_box", "yellow_box"],
        "greengrass_v2_detector_deployment_wait": False,
        "greengrass_v2_detector_iot_job_configuration": {
            "job_executions_rollout_config": {"maximum_per_minute": 10},
            "abort_config": {
                "criteria_list": [
                    {"failure_type": "FAILED", "threshold_percentage": 50, "min_number_of_executed_things": 1}
                ]
            },
        },
    }


class Cloud:
    def __init__(self, aws_client):
        self.gg2 = aws_client("greengrassv2")
        self.iot = aws_client("iot")
        self.iam = aws_client("iam")
        self.s3 = aws_client("s3")

    def versions(self, name: str) -> list[str]:
        components = [c for c in self.gg2.list_components(scope="PRIVATE")["components"] if c["componentName"] == name]
        if not components:
            return []
        listed = self.gg2.list_component_versions(arn=components[0]["arn"])["componentVersions"]
        return sorted(v["componentVersion"] for v in listed)

    def deployments(self) -> list[dict]:
        arn = self.iot.describe_thing_group(thingGroupName=GROUP)["thingGroupArn"]
        return self.gg2.list_deployments(targetArn=arn, historyFilter="ALL")["deployments"]

    def recipe(self, name: str, version: str) -> dict:
        components = [c for c in self.gg2.list_components(scope="PRIVATE")["components"] if c["componentName"] == name]
        arn = f"{components[0]['arn']}:versions:{version}"
        return json.loads(self.gg2.get_component(arn=arn, recipeOutputFormat="JSON")["recipe"])


@pytest.mark.slow
def test_check_real_check_real_then_a_code_change_then_wait_per_device(
    tmp_path, ansible_env, aws_client, clean_aws, aws_endpoint, sources, model_archive
):
    cloud = Cloud(aws_client)
    inventory, playbook = write_bed(tmp_path, ansible_env, base_vars(tmp_path, sources, model_archive))

    check = run_playbook(ansible_env, inventory, playbook, tmp_path / "check1.log", check=True)
    assert check.returncode == 0, check.stdout[-4000:]
    assert cloud.versions(MODEL_COMPONENT) == [] and cloud.versions(DETECTOR_COMPONENT) == []
    assert cloud.iot.list_role_aliases()["roleAliases"] == []
    assert recap(check.stdout)["core-a"]["changed"] > 0

    first = run_playbook(ansible_env, inventory, playbook, tmp_path / "real1.log")
    assert first.returncode == 0, first.stdout[-4000:]
    assert cloud.versions(MODEL_COMPONENT) == ["1.0.0"]
    assert cloud.versions(DETECTOR_COMPONENT) == ["1.0.0"]
    deployments = cloud.deployments()
    assert len(deployments) == 1
    deployment = cloud.gg2.get_deployment(deploymentId=deployments[0]["deploymentId"])
    assert deployment["deploymentPolicies"]["failureHandlingPolicy"] == "ROLLBACK"
    assert deployment["iotJobConfiguration"]["jobExecutionsRolloutConfig"]["maximumPerMinute"] == 10
    assert set(deployment["components"]) == {MODEL_COMPONENT, DETECTOR_COMPONENT}

    # Token exchange: the alias points at the role, the role trusts the credentials provider only and may read
    # only the artifacts; each device's policy allows AssumeRoleWithCertificate on that alias and nothing else.
    alias = cloud.iot.describe_role_alias(roleAlias=ALIAS)["roleAliasDescription"]
    role = cloud.iam.get_role(RoleName=ROLE)["Role"]
    assert alias["roleArn"] == role["Arn"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "credentials.iot.amazonaws.com"}]
    access = cloud.iam.get_role_policy(RoleName=ROLE, PolicyName="edgeml-greengrass-v2-core-access")["PolicyDocument"]
    access = json.loads(access) if isinstance(access, str) else access
    assert access["Statement"][0]["Resource"] == [f"arn:aws:s3:::{BUCKET}/greengrass-v2/*"]
    for host in HOSTS:
        policy = json.loads(cloud.iot.get_policy(policyName=f"{host}-policy")["policyDocument"])
        assume = [s for s in policy["Statement"] if "iot:AssumeRoleWithCertificate" in s["Action"]]
        assert len(assume) == 1 and assume[0]["Resource"] == [alias["roleAliasArn"]]
        assert not any(a.startswith("greengrass:") for s in policy["Statement"] for a in s["Action"])
        groups = cloud.iot.list_thing_groups_for_thing(thingName=host)["thingGroups"]
        assert [g["groupName"] for g in groups] == [GROUP]

    # The detector runs the inference code with the runtime's Python; the model is a pinned hard dependency
    # whose .tar.gz is unpacked at install.
    recipe = cloud.recipe(DETECTOR_COMPONENT, "1.0.0")
    assert recipe["ComponentDependencies"][MODEL_COMPONENT]["VersionRequirement"] == "=1.0.0"
    lifecycle = recipe["Manifests"][0]["Lifecycle"]
    assert "/opt/edgeml/inference-venv/bin/python" in lifecycle["Run"]["Script"]
    # The default backend: the model converted for ONNX Runtime on the controller, in S3 under its digest.
    model_recipe = cloud.recipe(MODEL_COMPONENT, "1.0.0")
    [artifact] = model_recipe["Manifests"][0]["Artifacts"]
    converted = artifact["URI"].rsplit("/", 1)[1]
    assert re.fullmatch(r"small_ssd-[0-9a-f]{12}\.onnx\.tar\.gz", converted), artifact
    assert f"{{{MODEL_COMPONENT}:artifacts:path}}/{converted}" in lifecycle["Install"]["Script"]
    # Setenv for every step: Install checks the model with the settings Run will use.
    assert lifecycle["Setenv"]["CLASS_LABELS"] == "blue_box,yellow_box"
    assert lifecycle["Setenv"]["DETECTOR_BACKEND"] == "onnxruntime"
    assert lifecycle["Install"]["Script"].endswith("greengrass_v2_detector.py --check-model")
    assert lifecycle["Install"]["Timeout"] == 300

    check2 = run_playbook(ansible_env, inventory, playbook, tmp_path / "check2.log", check=True)
    second = run_playbook(ansible_env, inventory, playbook, tmp_path / "real2.log")
    for proc in (check2, second):
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert {h: r["changed"] for h, r in recap(proc.stdout).items()} == {h: 0 for h in HOSTS}, proc.stdout[-4000:]
    assert cloud.versions(DETECTOR_COMPONENT) == ["1.0.0"] and len(cloud.deployments()) == 1

    # New inference code: a new detector version (the model stays), and one new deployment.
    (sources / "object_detector.py").write_text((sources / "object_detector.py").read_text() + "\n# changed\n")
    changed = run_playbook(ansible_env, inventory, playbook, tmp_path / "real3.log")
    assert changed.returncode == 0, changed.stdout[-4000:]
    assert cloud.versions(MODEL_COMPONENT) == ["1.0.0"]
    assert cloud.versions(DETECTOR_COMPONENT) == ["1.0.0", "1.0.1"]
    assert len(cloud.deployments()) == 2

    # Waiting: core-a's nucleus reports SUCCEEDED, core-b's FAILED: only core-b's host fails, naming the reason.
    for host in HOSTS:
        control(aws_endpoint.url, "core-device", {"thing_name": host})
    control(aws_endpoint.url, "deployment-report", {"thing_name": "core-a", "status": "SUCCEEDED"})
    control(
        aws_endpoint.url,
        "deployment-report",
        {
            "thing_name": "core-b",
            "status": "FAILED",
            "reason": "model did not load",
            "error_stack": ["COMPONENT_BROKEN"],
        },
    )
    waited = run_playbook(
        ansible_env,
        inventory,
        playbook,
        tmp_path / "wait.log",
        extra_vars={
            "greengrass_v2_detector_deployment_wait": True,
            "greengrass_v2_detector_deployment_wait_timeout": 10,
        },
    )
    result = recap(waited.stdout)
    assert result["core-a"]["failed"] == 0 and result["core-b"]["failed"] == 1, waited.stdout[-4000:]
    assert result["core-a"]["changed"] == 0
    assert "core-b: deployment" in waited.stdout and "FAILED" in waited.stdout and "model did not load" in waited.stdout
    assert "COMPONENT_BROKEN" in waited.stdout


def test_bad_inputs_fail_before_anything_is_written(
    tmp_path, ansible_env, aws_client, clean_aws, sources, model_archive
):
    cloud = Cloud(aws_client)
    cases = {
        "greengrass_v2_detector_artifact_bucket": "Not_A_Bucket",
        "greengrass_v2_detector_role_alias": "bad/alias",
        "greengrass_v2_detector_score_threshold": 1.5,
        "greengrass_v2_detector_model_archive": str(tmp_path / "missing.zip"),
    }
    for name, value in cases.items():
        group_vars = dict(base_vars(tmp_path, sources, model_archive), **{name: value})
        inventory, playbook = write_bed(tmp_path, ansible_env, group_vars)
        proc = run_playbook(
            ansible_env, inventory, playbook, tmp_path / f"bad-{name}.log", tags="greengrass_v2_detector_cloud"
        )
        assert proc.returncode != 0, name
        assert name in proc.stdout, (name, proc.stdout[-3000:])
    assert cloud.iot.list_role_aliases()["roleAliases"] == []
    assert cloud.s3.list_buckets()["Buckets"] == []
    assert cloud.gg2.list_components(scope="PRIVATE")["components"] == []


@pytest.mark.slow
def test_a_failed_fleet_step_fails_every_device_by_name_and_a_rerun_completes(
    tmp_path, ansible_env, aws_client, clean_aws, sources, model_archive
):
    """The fleet-wide steps run on one device's behalf (the play's fleet host). When AWS refuses one for good, that
    host fails with AWS's error and every other device fails right after, naming it; none leaves the run silently
    (with run_once, ansible-core counted only the first host and dropped the others from the recap)."""
    cloud = Cloud(aws_client)
    steps = {
        "component": (r"^/greengrass/v2/createComponentVersion$", "the fleet-wide step"),
        "deployment": (r"^/greengrass/v2/deployments$", f"the deployment to thing group {GROUP}"),
    }
    for step, (path, named) in steps.items():
        plan = FaultPlan(rules=[FaultRule("reject", "POST", path)])
        with FaultProxy(clean_aws.url, plan) as proxy:
            env = dict(ansible_env, AWS_ENDPOINT_URL=proxy.url)
            inventory, playbook = write_bed(tmp_path, env, base_vars(tmp_path, sources, model_archive))
            failed = run_playbook(env, inventory, playbook, tmp_path / f"{step}-refused.log")
        assert [entry.fault for entry in plan.log] == ["reject"], plan.log
        assert failed.returncode != 0
        assert {h: r["failed"] for h, r in recap(failed.stdout).items()} == {"core-a": 1, "core-b": 1}, failed.stdout[
            -4000:
        ]
        assert "ValidationException" in failed.stdout  # AWS's refusal, on the fleet host
        assert f"core-b: not {'provisioned' if step == 'component' else 'deployed'} - {named}" in failed.stdout
        assert "failed on core-a" in failed.stdout
    assert cloud.deployments() == []

    inventory, playbook = write_bed(tmp_path, ansible_env, base_vars(tmp_path, sources, model_archive))
    rerun = run_playbook(ansible_env, inventory, playbook, tmp_path / "rerun.log")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert cloud.versions(MODEL_COMPONENT) == ["1.0.0"] and cloud.versions(DETECTOR_COMPONENT) == ["1.0.0"]
    assert len(cloud.deployments()) == 1


@pytest.mark.slow
def test_an_unreachable_device_leaves_the_others_converged_and_a_rerun_completes_it(
    tmp_path, ansible_env, aws_client, clean_aws, sources, model_archive
):
    """core-0, first in the inventory (so the play's fleet host had it been there), cannot be reached: the others
    make the fleet-wide resources and converge; once core-0 answers, a re-run completes it without a new
    component version or deployment (the thing group's deployment covers its new member)."""
    cloud = Cloud(aws_client)
    local = {"ansible_connection": "local"}
    unreachable = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_user": "root"}
    group_vars = base_vars(tmp_path, sources, model_archive)
    inventory, playbook = write_bed(
        tmp_path, ansible_env, group_vars, {"core-0": unreachable, "core-a": local, "core-b": local}
    )
    first = run_playbook(ansible_env, inventory, playbook, tmp_path / "core-0-down.log")
    summary = recap(first.stdout)
    assert summary["core-0"]["unreachable"] == 1 and first.returncode != 0, first.stdout[-4000:]
    assert {h: summary[h]["failed"] for h in HOSTS} == {"core-a": 0, "core-b": 0}, first.stdout[-4000:]
    assert cloud.versions(DETECTOR_COMPONENT) == ["1.0.0"] and len(cloud.deployments()) == 1
    members = cloud.iot.list_things_in_thing_group(thingGroupName=GROUP)["things"]
    assert sorted(members) == HOSTS

    inventory, playbook = write_bed(
        tmp_path, ansible_env, group_vars, {"core-0": local, "core-a": local, "core-b": local}
    )
    rerun = run_playbook(ansible_env, inventory, playbook, tmp_path / "core-0-back.log")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    summary = recap(rerun.stdout)
    assert summary["core-0"]["changed"] > 0 and summary["core-a"]["changed"] == summary["core-b"]["changed"] == 0
    assert sorted(cloud.iot.list_things_in_thing_group(thingGroupName=GROUP)["things"]) == ["core-0", *HOSTS]
    assert cloud.versions(DETECTOR_COMPONENT) == ["1.0.0"] and len(cloud.deployments()) == 1
