"""A Greengrass create whose response is lost is not made twice: the retry carries the first attempt's client token.

The fault proxy lets the endpoint execute the first CreateComponentVersion / CreateDeployment and answers it with
the service's 500, as a response lost on the way back. The retry then repeats a create that already happened:
- when botocore retries (the playbooks' client settings), botocore keeps its own idempotency token;
- when botocore gives up and the collection's ``aws_retry()`` retries (botocore set to one attempt here, to make
  that path the one taken), the token must come from the collection: one per create, reused by every retry.
Either way the service answers the repeat with the first create's answer (V2: clientToken; V1 CreateDeployment:
X-Amzn-Client-Token, both as the service models document, emulated by the bed), so exactly one component version
and one deployment exist and the module reports the one that does.

Real parts: the modules run as Ansible's module processes, through the fault proxy, against the local endpoint.
"""

from __future__ import annotations

import pytest

from tests.roles.playbook_json import playbook_aws_client_config, run_module_process
from tests.testbed.fault_proxy import FaultPlan, FaultProxy, FaultRule

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
