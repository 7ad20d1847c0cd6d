"""playbooks/migrate_greengrass_v1_to_v2.yml on simulated devices against the local AWS endpoint.

Two real simulated Debian 12 devices (systemd, SSH) are provisioned with Greengrass V1 by site.yml (the stand-in
V1 core, the detector's V1 group), then migrated. Nothing plays the Greengrass V2 nucleus's cloud side (the
stand-in nucleus runs but talks to no cloud): as the nucleus would, the test registers both core devices with the
endpoint's Greengrass V2 emulation and reports the deployment's outcome per device through its test-bed control
(``/moto-api/static/greengrassv2/...``): edge-01 SUCCEEDED, edge-02 FAILED. Expected: the V2 components and the
ROLLBACK deployment exist, both nuclei run, edge-01's V1 core is stopped and disabled, edge-02's still runs and
its host failed naming the reason, and a re-run changes nothing on edge-01.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from testbed.greengrassv2_emulation import control
from tests.e2e.fleet import (
    SITE_PLAYBOOK,
    aws_clients,
    build_artefacts,
    device_bed,
    run_site,
)

pytestmark = [pytest.mark.devices, pytest.mark.aws, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATE_PLAYBOOK = REPO_ROOT / "playbooks" / "migrate_greengrass_v1_to_v2.yml"
THING_GROUP = "edgeml-demo-detectors"  # inventories/local_testbed's greengrass_v2_detector_thing_group


@pytest.fixture(scope="module")
def fleet():
    # No endpoint for the devices: here the test plays the V2 nucleus's reports through the bed's control.
    with device_bed("e2e-migration", count=2) as bed:
        yield bed


@pytest.fixture(scope="module")
def env(endpoint, workdir) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(endpoint.environment())
    return environment


@pytest.fixture(scope="module")
def extra_vars_file(workdir) -> Path:
    artefacts = build_artefacts(workdir / "artefacts")
    artefacts["greengrass_v1_detector_package_path"] = str(workdir / "package" / "detector-v1.zip")
    artefacts["greengrass_v2_detector_package_path"] = str(workdir / "package" / "detector-v2.zip")
    path = workdir / "artefacts.json"
    path.write_text(json.dumps(artefacts, indent=2) + "\n")
    return path


@pytest.fixture(scope="module")
def migrated(fleet, endpoint, env, extra_vars_file, workdir):
    v1 = run_site(
        SITE_PLAYBOOK,
        [fleet.inventory],
        extra_vars_file,
        env,
        # Without the endpoint map the V1 cores are offline too, so nothing would report the V1 deployments.
        extra_vars={"edgeml_greengrass_generation": "v1", "greengrass_v1_detector_deployment_wait": False},
    )
    assert v1.run.returncode == 0, v1.describe()
    for host in ("edge-01", "edge-02"):
        assert fleet.run(host, "systemctl is-active greengrass.service").stdout.strip() == "active"
        control(endpoint.url, "core-device", {"thing_name": host})
    control(endpoint.url, "deployment-report", {"thing_name": "edge-01", "status": "SUCCEEDED"})
    control(
        endpoint.url,
        "deployment-report",
        {
            "thing_name": "edge-02",
            "status": "FAILED",
            "reason": "detector did not start",
            "error_stack": ["COMPONENT_ERROR"],
        },
    )
    cache = {
        # The migration's model cache stays in the test's folder.
        "migrate_model_cache": str(workdir / "model-cache"),
        # Test-bed gap: moto answers every DescribeEndpoint with a new random host name, AWS with the account's
        # fixed one. Pinned here as an account's would be, so the re-run compares like with like.
        "greengrass_v2_nucleus_data_endpoint": "testbed-ats.iot.us-east-1.amazonaws.com",
        "greengrass_v2_nucleus_credentials_endpoint": "testbed.credentials.iot.us-east-1.amazonaws.com",
    }
    first = run_site(MIGRATE_PLAYBOOK, [fleet.inventory], extra_vars_file, env, extra_vars=cache, timeout=2400)
    second = run_site(MIGRATE_PLAYBOOK, [fleet.inventory], extra_vars_file, env, extra_vars=cache, timeout=2400)
    for name, run in (("first", first), ("second", second)):
        (workdir / f"migration-{name}.json").write_text(json.dumps(run.run.output, indent=1) + "\n" + run.run.stderr)
    return first, second


def unit_state(fleet, host: str, unit: str) -> tuple[str, str]:
    active = fleet.run(host, f"systemctl is-active {unit}").stdout.strip()
    enabled = fleet.run(host, f"systemctl is-enabled {unit}").stdout.strip()
    return active, enabled


def test_components_and_rollback_deployment_exist(migrated, endpoint):
    client = aws_clients(endpoint)
    gg2, iot = client("greengrassv2"), client("iot")
    names = {c["componentName"] for c in gg2.list_components(scope="PRIVATE")["components"]}
    assert names == {"com.edgeml.SsdModel", "com.edgeml.ObjectDetector"}
    group_arn = iot.describe_thing_group(thingGroupName=THING_GROUP)["thingGroupArn"]
    deployments = gg2.list_deployments(targetArn=group_arn, historyFilter="ALL")["deployments"]
    assert len(deployments) == 1, deployments  # the re-run made no second one
    deployment = gg2.get_deployment(deploymentId=deployments[0]["deploymentId"])
    assert deployment["deploymentPolicies"]["failureHandlingPolicy"] == "ROLLBACK"
    # The V1 group's settings carried over: its class labels and topics.
    detector = [
        c
        for c in gg2.list_components(scope="PRIVATE")["components"]
        if c["componentName"] == "com.edgeml.ObjectDetector"
    ]
    recipe_arn = (
        f"{detector[0]['arn']}:versions:{deployment['components']['com.edgeml.ObjectDetector']['componentVersion']}"
    )
    recipe = json.loads(gg2.get_component(arn=recipe_arn, recipeOutputFormat="JSON")["recipe"])
    setenv = recipe["Manifests"][0]["Lifecycle"]["Setenv"]
    assert setenv["CLASS_LABELS"] == "blue_box,yellow_box"
    assert setenv["INPUT_TOPIC"] == "blog/infer/input" and setenv["OUTPUT_TOPIC"] == "blog/infer/output"


def test_succeeded_device_runs_the_nucleus_and_its_v1_core_is_stopped_and_disabled(migrated, fleet):
    first, _ = migrated
    assert first.recap["edge-01"]["failures"] == 0, first.describe()
    assert unit_state(fleet, "edge-01", "greengrass.service") == ("active", "enabled")
    unit = fleet.run("edge-01", "cat /etc/systemd/system/greengrass.service").stdout
    assert "alts/current/distro/bin/loader" in unit and "greengrassd" not in unit
    assert unit_state(fleet, "edge-01", "greengrass-v1.service") == ("inactive", "disabled")


def test_migrated_device_runtime_has_the_v2_detectors_ipc_client(migrated, fleet):
    """The V1-provisioned runtime had no awsiotsdk; the V2 component imports it (the role's pins)."""
    probe = fleet.run(
        "edge-01",
        "/opt/edgeml/inference-venv/bin/python -c "
        "'import awsiot.greengrasscoreipc.clientv2, importlib.metadata as m; print(m.version(\"awsiotsdk\"))'",
    )
    assert probe.returncode == 0, probe.stderr
    defaults = yaml.safe_load((REPO_ROOT / "roles/greengrass_v2_detector/defaults/main.yml").read_text())
    assert f"awsiotsdk=={probe.stdout.strip()}" in defaults["greengrass_v2_detector_runtime_pip_packages"]


def test_failed_device_keeps_its_v1_core_running(migrated, fleet):
    first, second = migrated
    for run in (first, second):
        assert run.recap["edge-02"]["failures"] == 1, run.describe()
        failures = " ".join(run.host_failures("edge-02"))
        assert "FAILED" in failures and "detector did not start" in failures, failures
    assert unit_state(fleet, "edge-02", "greengrass-v1.service") == ("active", "enabled")


def test_rerun_changes_nothing(migrated):
    _, second = migrated
    assert second.recap["edge-01"]["changed"] == 0, second.changed_tasks()
    assert second.recap["edge-01"]["failures"] == 0, second.describe()
