"""greengrass_v2_deployment never uninstalls, unseen, a component someone else deployed to the same thing group.

A new deployment replaces the group's previous one, and a core device uninstalls every component the new one leaves
out (Greengrass V2 developer guide, "Create deployments", warning). "Another team" here is plain boto3, the way a
console user or another tool makes a deployment: it either starts from the group's latest deployment (as the guide
advises) without the module's ownership tags, or replaces it with its own components only.

Real parts: the module runs as Ansible's module process against the local endpoint's Greengrass V2 emulation.
"""

from __future__ import annotations

import json

import pytest

from tests.roles.playbook_json import run_module_process

pytestmark = pytest.mark.aws

THING_GROUP = "other-components-fleet"
OURS, OURS_TOO, THEIRS = "com.edgeml.Detector", "com.edgeml.Model", "com.example.LogShipper"


def _recipe(name: str) -> dict:
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": "1.0.0",
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": "sleep 3600"}}],
    }


@pytest.fixture
def fleet(clean_aws, aws_client, tmp_path):
    """(deploy, greengrass, group_arn): deploy(**options) runs the module once and returns its result."""
    greengrass, iot = aws_client("greengrassv2"), aws_client("iot")
    group_arn = iot.create_thing_group(thingGroupName=THING_GROUP)["thingGroupArn"]
    for name in (OURS, OURS_TOO, THEIRS):
        greengrass.create_component_version(inlineRecipe=json.dumps(_recipe(name)).encode())
    runs = iter(range(1000))

    def deploy(check_mode: bool = False, **options) -> dict:
        args = dict(clean_aws.module_options(), thing_group=THING_GROUP, wait=False, **options)
        if check_mode:
            args["_ansible_check_mode"] = True
        return run_module_process("greengrass_v2_deployment", args, tmp_path / f"run-{next(runs)}.json")

    return deploy, greengrass, group_arn


def _latest(greengrass, group_arn) -> dict:
    [latest] = greengrass.list_deployments(targetArn=group_arn, historyFilter="LATEST_ONLY")["deployments"]
    return greengrass.get_deployment(deploymentId=latest["deploymentId"])


def _count(greengrass, group_arn) -> int:
    return len(greengrass.list_deployments(targetArn=group_arn, historyFilter="ALL")["deployments"])


def _another_team_deploys(greengrass, group_arn, start_from_latest: bool) -> None:
    components = {THEIRS: {"componentVersion": "1.0.0", "configurationUpdate": {"merge": '{"level": "debug"}'}}}
    if start_from_latest:
        components.update(_latest(greengrass, group_arn)["components"])
    greengrass.create_deployment(
        targetArn=group_arn, deploymentName="log-shipping", components=components, tags={"team": "platform"}
    )


def _v(*names: str) -> dict:
    return {name: {"component_version": "1.0.0"} for name in names}


def test_another_teams_component_survives_and_ours_are_removed_without_naming_theirs(fleet):
    deploy, greengrass, group_arn = fleet
    first = deploy(components=_v(OURS, OURS_TOO))
    assert first["changed"] and first["kept_components"] == [] and first["removed_components"] == [], first

    # The other team starts from our deployment (as AWS advises) but its deployment does not carry our tags.
    _another_team_deploys(greengrass, group_arn, start_from_latest=True)
    theirs = _latest(greengrass, group_arn)
    assert set(theirs["components"]) == {OURS, OURS_TOO, THEIRS}

    # Our unchanged inputs: their component is carried over with its configuration, once; a re-run changes nothing.
    predicted = deploy(components=_v(OURS, OURS_TOO), check_mode=True)
    ours = deploy(components=_v(OURS, OURS_TOO))
    again = deploy(components=_v(OURS, OURS_TOO))
    latest = _latest(greengrass, group_arn)
    assert predicted["changed"] and predicted["kept_components"] == [THEIRS], predicted
    assert ours["changed"] and ours["kept_components"] == [THEIRS] and ours["removed_components"] == [], ours
    assert latest["components"][THEIRS] == theirs["components"][THEIRS], latest["components"]
    assert set(latest["components"]) == {OURS, OURS_TOO, THEIRS}
    assert not again["changed"] and again["deployment"]["deployment_id"] == latest["deploymentId"], again

    # Dropping one of ours needs no list of theirs: the module's own record says which ones are its.
    _another_team_deploys(greengrass, group_arn, start_from_latest=True)  # again without our tags
    smaller = deploy(components=_v(OURS))
    latest = _latest(greengrass, group_arn)
    assert smaller["changed"] and smaller["removed_components"] == [OURS_TOO], smaller
    assert set(latest["components"]) == {OURS, THEIRS}, latest["components"]


def test_a_team_that_replaced_ours_gets_both_back(fleet):
    deploy, greengrass, group_arn = fleet
    deploy(components=_v(OURS))
    _another_team_deploys(greengrass, group_arn, start_from_latest=False)  # their component only: ours uninstalled
    restored = deploy(components=_v(OURS))
    assert restored["changed"] and restored["kept_components"] == [THEIRS], restored
    assert set(_latest(greengrass, group_arn)["components"]) == {OURS, THEIRS}


def test_replace_names_each_component_it_would_uninstall_before_writing_and_does_only_what_is_listed(fleet):
    deploy, greengrass, group_arn = fleet
    deploy(components=_v(OURS))
    _another_team_deploys(greengrass, group_arn, start_from_latest=True)
    before = _count(greengrass, group_arn)

    refused = deploy(components=_v(OURS_TOO), other_components="replace")
    assert refused.get("failed"), refused
    assert "other_components: replace would uninstall" in refused["msg"] and THEIRS in refused["msg"], refused
    assert "remove_components" in refused["msg"], refused
    assert _count(greengrass, group_arn) == before, "a refused replace wrote a deployment"

    replaced = deploy(components=_v(OURS_TOO), other_components="replace", remove_components=[THEIRS])
    assert replaced["changed"] and replaced["removed_components"] == [OURS, THEIRS], replaced
    assert set(_latest(greengrass, group_arn)["components"]) == {OURS_TOO}
    # The name is ignored once it is gone: the same inputs again change nothing.
    again = deploy(components=_v(OURS_TOO), other_components="replace", remove_components=[THEIRS])
    assert not again["changed"], again


def test_absent_uninstalls_only_ours_while_anothers_component_remains(fleet):
    deploy, greengrass, group_arn = fleet
    deploy(components=_v(OURS, OURS_TOO))
    _another_team_deploys(greengrass, group_arn, start_from_latest=True)
    before = _count(greengrass, group_arn)

    predicted = deploy(state="absent", check_mode=True)
    assert predicted["changed"] and predicted["removed_components"] == [OURS, OURS_TOO], predicted
    assert _count(greengrass, group_arn) == before, "check mode wrote a deployment"
    absent = deploy(state="absent")
    latest = _latest(greengrass, group_arn)
    assert absent["changed"] and absent["deleted"] == [] and absent["kept_components"] == [THEIRS], absent
    assert set(latest["components"]) == {THEIRS} and latest["deploymentName"] == "log-shipping", latest
    assert not any(key.startswith("edgeml:component:") for key in latest.get("tags", {})), latest["tags"]
    assert not deploy(state="absent")["changed"]


def test_inputs_that_contradict_are_refused_naming_the_input(fleet):
    deploy, greengrass, group_arn = fleet
    both = deploy(components=_v(OURS), remove_components=[OURS])
    reserved = deploy(components=_v(OURS), tags={"edgeml:component:1": OURS})
    assert both.get("failed") and "remove_components: com.edgeml.Detector is also in components" in both["msg"]
    assert reserved.get("failed") and "tags: edgeml:component:1" in reserved["msg"], reserved
    assert _count(greengrass, group_arn) == 0
