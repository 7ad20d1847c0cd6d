"""A Greengrass create whose response is lost is not made twice: the retry carries the first attempt's client token.

The fault proxy lets the endpoint execute the first CreateComponentVersion / CreateDeployment and answers it with
the service's 500, as a response lost on the way back. The retry then repeats a create that already happened:
- when botocore retries (the playbooks' client settings), botocore keeps its own idempotency token;
- when botocore gives up and the collection's ``aws_retry()`` retries (botocore set to one attempt here, to make
  that path the one taken), the token must come from the collection: one per create, reused by every retry.
Either way the service answers the repeat with the first create's answer (V2: clientToken; V1 CreateDeployment:
X-Amzn-Client-Token, both as the service models document, emulated by the bed), so exactly one component version
and one deployment exist and the module reports the one that does.

Greengrass V1's other creates (CreateGroup, Create*Definition) have the same header, but the API reference documents
no idempotency for them (the bed does not emulate any): a retried one makes a second resource, which the module
finds and deletes after its run (the last test).

Real parts: the modules run as Ansible's module processes, through the fault proxy, against the local endpoint.
"""

from __future__ import annotations

import pytest

from testbed.fault_proxy import FaultPlan, FaultProxy, FaultRule
from tests.roles.playbook_json import playbook_aws_client_config, run_module_process

pytestmark = pytest.mark.aws

THING_GROUP = "lost-responses-fleet"
COMPONENT = "com.edgeml.LostResponses"
RECIPE = {
    "RecipeFormatVersion": "2020-01-25",
    "ComponentName": COMPONENT,
    "ComponentVersion": "1.0.0",
    "ComponentPublisher": "edgeml tests",
    "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": "sleep 3600"}}],
}

# Which layer retries the lost create: botocore (the playbooks' settings) or the collection (botocore: one attempt).
RETRIED_BY = {
    "botocore": playbook_aws_client_config,
    "collection": lambda: {"retries": {"mode": "standard", "total_max_attempts": 1}},
}


@pytest.fixture(params=sorted(RETRIED_BY))
def through_lost_creates(request, clean_aws, tmp_path):
    """run(module, rules, **options) -> (result, plan): the module once through a proxy that loses the answers
    the rules name, with the client settings of the retrying layer under test."""
    aws_config = RETRIED_BY[request.param]()

    def run(module: str, rules: list[FaultRule], **options):
        plan = FaultPlan(rules=rules)
        with FaultProxy(clean_aws.url, plan) as proxy:
            args = dict(clean_aws.module_options(), endpoint_url=proxy.url, aws_config=aws_config, **options)
            result = run_module_process(module, args, tmp_path / f"{module}.json")
        lost = [(entry.service, entry.method, entry.path) for entry in plan.log if entry.fault == "lost"]
        assert len(lost) == len(rules), f"the proxy lost {lost}, expected one answer per rule"
        assert not result.get("failed"), result
        return result

    return run


def test_component_version_and_deployment_are_made_once(through_lost_creates, aws_client):
    greengrass, iot = aws_client("greengrassv2"), aws_client("iot")
    group_arn = iot.create_thing_group(thingGroupName=THING_GROUP)["thingGroupArn"]

    component = through_lost_creates(
        "greengrass_v2_component",
        [FaultRule("lost", "POST", r"^/greengrass/v2/createComponentVersion$")],
        recipe=RECIPE,
    )
    assert component["changed"] and component["component"]["version"] == "1.0.0", component
    versions = greengrass.list_component_versions(arn=component["component"]["arn"].rsplit(":versions:", 1)[0])
    assert [v["componentVersion"] for v in versions["componentVersions"]] == ["1.0.0"]

    deployed = through_lost_creates(
        "greengrass_v2_deployment",
        [FaultRule("lost", "POST", r"^/greengrass/v2/deployments$")],
        thing_group=THING_GROUP,
        components={COMPONENT: {"component_version": "1.0.0"}},
        wait=False,
    )
    deployments = greengrass.list_deployments(targetArn=group_arn, historyFilter="ALL")["deployments"]
    assert [d["deploymentId"] for d in deployments] == [deployed["deployment"]["deployment_id"]], deployments
    assert deployed["changed"] and deployments[0]["deploymentStatus"] == "ACTIVE"


def test_greengrass_v1_deployment_is_made_once(through_lost_creates, clean_aws, aws_client, tmp_path):
    iot, greengrass = aws_client("iot"), aws_client("greengrass")
    thing = iot.create_thing(thingName="lost-responses-core")
    certificate = iot.create_keys_and_certificate(setAsActive=True)
    group = run_module_process(
        "greengrass_v1_group",
        dict(
            clean_aws.module_options(),
            name="lost-responses-group",
            core={"thing_arn": thing["thingArn"], "certificate_arn": certificate["certificateArn"]},
        ),
        tmp_path / "group.json",
    )
    assert not group.get("failed"), group

    deployed = through_lost_creates(
        "greengrass_v1_deployment",
        [FaultRule("lost", "POST", r"^/greengrass/groups/[^/]+/deployments$")],
        group_name="lost-responses-group",
        wait=False,
    )
    deployments = greengrass.list_deployments(GroupId=group["group"]["id"])["Deployments"]
    assert [d["DeploymentId"] for d in deployments] == [deployed["deployment"]["id"]], deployments
    assert deployed["changed"]


def test_greengrass_v1_group_and_its_definitions_are_made_once(through_lost_creates, aws_client):
    """Greengrass V1 documents no idempotency for CreateGroup or Create*Definition (only CreateDeployment's), so a
    retried create makes a second one: the module removes the duplicates its own lost creates left."""
    iot, greengrass = aws_client("iot"), aws_client("greengrass")
    thing = iot.create_thing(thingName="lost-group-core")
    certificate = iot.create_keys_and_certificate(setAsActive=True)
    name = "lost-responses-v1-group"
    group = through_lost_creates(
        "greengrass_v1_group",
        [
            FaultRule("lost", "POST", r"^/greengrass/definition/cores$"),
            FaultRule("lost", "POST", r"^/greengrass/definition/subscriptions$"),
            FaultRule("lost", "POST", r"^/greengrass/groups$"),
        ],
        name=name,
        core={"thing_arn": thing["thingArn"], "certificate_arn": certificate["certificateArn"]},
        subscriptions=[{"source": "cloud", "subject": "lost/in", "target": thing["thingArn"]}],
    )
    groups = [g["Id"] for g in greengrass.list_groups()["Groups"] if g["Name"] == name]
    assert groups == [group["group"]["id"]], groups
    assert [v["Version"] for v in greengrass.list_group_versions(GroupId=groups[0])["Versions"]] == [
        group["group"]["latest_version"]
    ]
    in_use = greengrass.get_group_version(GroupId=groups[0], GroupVersionId=group["group"]["latest_version"])
    for kind, api, key in (
        ("core", "core", "CoreDefinitionVersionArn"),
        ("subscriptions", "subscription", "SubscriptionDefinitionVersionArn"),
    ):
        named = [
            d["Arn"]
            for d in getattr(greengrass, f"list_{api}_definitions")()["Definitions"]
            if d.get("Name") == f"{name}-{kind}"
        ]
        assert len(named) == 1 and in_use["Definition"][key].startswith(named[0] + "/versions/"), (kind, named, in_use)


def test_a_run_killed_after_a_retried_create_group_leaves_duplicates_the_next_run_removes(
    clean_aws, aws_client, tmp_path
):
    """The state a run killed between a retried CreateGroup and the module's own clean-up leaves: two undeployed
    groups of one name with the same first version. The next run keeps the oldest and deletes the other; a group
    of that name that differs is never taken for a duplicate."""
    iot, greengrass = aws_client("iot"), aws_client("greengrass")
    thing = iot.create_thing(thingName="killed-group-core")
    certificate = iot.create_keys_and_certificate(setAsActive=True)
    name = "killed-after-lost-create"
    options = dict(
        clean_aws.module_options(),
        name=name,
        core={"thing_arn": thing["thingArn"], "certificate_arn": certificate["certificateArn"]},
    )
    first = run_module_process("greengrass_v1_group", options, tmp_path / "first.json")
    assert not first.get("failed") and first["deleted_duplicate_groups"] == [], first
    version = greengrass.get_group_version(
        GroupId=first["group"]["id"], GroupVersionId=first["group"]["latest_version"]
    )
    duplicate = greengrass.create_group(Name=name, InitialVersion=version["Definition"])["Id"]

    rerun = run_module_process("greengrass_v1_group", options, tmp_path / "rerun.json")
    assert not rerun.get("failed"), rerun
    assert rerun["changed"] and rerun["deleted_duplicate_groups"] == [duplicate], rerun
    assert rerun["group"]["id"] == first["group"]["id"]
    assert [g["Id"] for g in greengrass.list_groups()["Groups"] if g["Name"] == name] == [first["group"]["id"]]
    again = run_module_process("greengrass_v1_group", options, tmp_path / "again.json")
    assert not again.get("failed") and not again["changed"], again

    # A group of the same name with other content is someone else's: the module refuses to choose.
    other = greengrass.create_group(Name=name)["Id"]
    refused = run_module_process("greengrass_v1_group", options, tmp_path / "refused.json")
    assert refused.get("failed") and "2 Greengrass groups are named" in refused["msg"] and other in refused["msg"], (
        refused
    )
    greengrass.delete_group(GroupId=other)
