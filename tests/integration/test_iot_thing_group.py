"""edgeml.greengrass.iot_thing_group against the local endpoint: created when missing, deleted only once unused.

Real parts: the module runs as Ansible's module process against the endpoint's AWS IoT (moto) and Greengrass V2
emulation.
"""

from __future__ import annotations

import json

import pytest

from tests.roles.playbook_json import run_module_process

pytestmark = pytest.mark.aws

GROUP = "retiring-fleet"


@pytest.fixture
def thing_group(clean_aws, tmp_path):
    runs = iter(range(100))

    def run(check_mode: bool = False, **options) -> dict:
        args = dict(clean_aws.module_options(), name=GROUP, **options)
        if check_mode:
            args["_ansible_check_mode"] = True
        return run_module_process("iot_thing_group", args, tmp_path / f"run-{next(runs)}.json")

    return run


def groups(aws_client) -> list[str]:
    return sorted(g["groupName"] for g in aws_client("iot").list_thing_groups()["thingGroups"])


def test_present_creates_once_and_check_mode_writes_nothing(thing_group, aws_client):
    predicted = thing_group(check_mode=True)
    assert predicted["changed"] and predicted["thing_group"] == {"name": GROUP, "arn": None}, predicted
    assert groups(aws_client) == []
    created = thing_group()
    assert created["changed"] and created["thing_group"]["arn"].endswith(f"thinggroup/{GROUP}"), created
    assert not thing_group()["changed"] and groups(aws_client) == [GROUP]


def test_absent_keeps_a_group_in_use_and_says_why_then_deletes_it_once_unused(thing_group, aws_client):
    iot, greengrass = aws_client("iot"), aws_client("greengrassv2")
    arn = thing_group()["thing_group"]["arn"]
    iot.create_thing(thingName="still-here")
    iot.add_thing_to_thing_group(thingGroupName=GROUP, thingName="still-here")
    iot.create_thing_group(thingGroupName="line-2", parentGroupName=GROUP)
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.Other",
        "ComponentVersion": "1.0.0",
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": "sleep 60"}}],
    }
    greengrass.create_component_version(inlineRecipe=json.dumps(recipe).encode())
    deployment = greengrass.create_deployment(
        targetArn=arn, deploymentName="other-team", components={"com.example.Other": {"componentVersion": "1.0.0"}}
    )

    kept = thing_group(state="absent")
    assert not kept["changed"] and kept["thing_group"]["name"] == GROUP, kept
    reasons = " | ".join(kept["kept_because"])
    assert "still-here" in reasons and "line-2" in reasons and "other-team" in reasons, reasons
    assert GROUP in groups(aws_client)

    iot.remove_thing_from_thing_group(thingGroupName=GROUP, thingName="still-here")
    iot.delete_thing_group(thingGroupName="line-2")
    greengrass.cancel_deployment(deploymentId=deployment["deploymentId"])
    greengrass.delete_deployment(deploymentId=deployment["deploymentId"])
    predicted = thing_group(check_mode=True, state="absent")
    assert predicted["changed"] and predicted["thing_group"] is None and GROUP in groups(aws_client), predicted
    deleted = thing_group(state="absent")
    assert deleted["changed"] and deleted["kept_because"] == [] and GROUP not in groups(aws_client), deleted
    assert not thing_group(state="absent")["changed"]


def test_a_wrong_name_is_refused_before_any_call(clean_aws, tmp_path, aws_client):
    args = dict(clean_aws.module_options(), name="bad/name")
    refused = run_module_process("iot_thing_group", args, tmp_path / "bad.json")
    assert refused.get("failed") and "name" in refused["msg"], refused
    assert groups(aws_client) == []
