"""The default device policies against AWS's documented minimal Greengrass core policies.

Each permission below is one the core software uses, as AWS's page lists it, made concrete for the thing
``core-1`` (the page's ``core-device-thing-name``); the product's policy is evaluated with the test bed's
AWS IoT policy evaluator (testbed/iot_data_plane/policy.py):
- V2: "Minimal AWS IoT policy for AWS IoT Greengrass V2 core devices", Greengrass V2 developer guide,
  device-auth.md (awsdocs/aws-iot-greengrass-v2-developer-guide).
- V1: "Minimal AWS IoT Policy for the AWS IoT Greengrass Core Device", Greengrass V1 developer guide,
  gg-sec.md (awsdocs/aws-greengrass-developer-guide).
Every documented permission must be allowed for core-1, the same permission for another thing (core-10,
which the page's ``core-device-thing-name*`` would also match) must not, and the policy may hold no action
the page does not list (besides the detector's own topics).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot

from testbed.iot_data_plane.policy import RequestContext, evaluate, parse_policy

ARN = "arn:aws:iot:us-east-1:123456789012:"
GG = "arn:aws:greengrass:us-east-1:123456789012:"
ALIAS = "GreengrassV2TokenExchangeRoleAlias"
DETECTOR_PREFIXES = ["core-1/", "blog/infer/"]


def v2_policy(thing="core-1"):
    document = iot.default_policy_document(
        thing, "aws", "us-east-1", "123456789012", DETECTOR_PREFIXES, False, None, [ALIAS], greengrass_v2_core=True
    )
    return parse_policy(thing + "-policy", document)


def v1_policy(thing="core-1", group="group-1"):
    document = iot.default_policy_document(thing, "aws", "us-east-1", "123456789012", DETECTOR_PREFIXES, True, group)
    return parse_policy(thing + "-policy", document)


def v2_permissions(thing):
    things = "$aws/things/%s/" % thing
    return [
        ("iot:Connect", ARN + "client/" + thing),
        ("iot:Connect", ARN + "client/" + thing + "#2"),  # the nucleus's second MQTT connection
        ("iot:Publish", ARN + "topic/" + things + "greengrass/health/json"),
        ("iot:Publish", ARN + "topic/" + things + "greengrassv2/health/json"),
        ("iot:Receive", ARN + "topic/" + things + "greengrassv2/health/json"),
        ("iot:Publish", ARN + "topic/" + things + "jobs/$next/get"),
        ("iot:Publish", ARN + "topic/" + things + "jobs/job-42/update"),
        ("iot:Subscribe", ARN + "topicfilter/" + things + "jobs/notify-next"),
        ("iot:Subscribe", ARN + "topicfilter/" + things + "jobs/$next/get/accepted"),
        ("iot:Subscribe", ARN + "topicfilter/" + things + "jobs/$next/get/rejected"),
        ("iot:Subscribe", ARN + "topicfilter/" + things + "jobs/+/update/accepted"),
        ("iot:Receive", ARN + "topic/" + things + "jobs/notify-next"),
        ("iot:Receive", ARN + "topic/" + things + "jobs/$next/get/accepted"),
        ("iot:Receive", ARN + "topic/" + things + "jobs/job-42/update/rejected"),
        ("iot:Publish", ARN + "topic/" + things + "shadow/get"),
        ("iot:Subscribe", ARN + "topicfilter/" + things + "shadow/get/accepted"),
        ("iot:Receive", ARN + "topic/" + things + "shadow/get/accepted"),
        ("iot:GetThingShadow", ARN + "thing/" + thing),
        ("iot:UpdateThingShadow", ARN + "thing/" + thing),
        ("iot:DeleteThingShadow", ARN + "thing/" + thing),
        ("iot:AssumeRoleWithCertificate", ARN + "rolealias/" + ALIAS),
        ("greengrass:GetComponentVersionArtifact", GG + "components:com.edgeml.ObjectDetector:versions:1.0.0"),
        ("greengrass:ResolveComponentCandidates", "*"),
        ("greengrass:GetDeploymentConfiguration", "*"),
        ("greengrass:ListThingGroupsForCoreDevice", "*"),
    ]


def thing_scoped(permissions):
    """The permissions that name the thing (the role alias and the Greengrass actions are fleet-wide)."""
    return [p for p in permissions if not p[0].startswith("greengrass:") and "rolealias/" not in p[1]]


def allowed(policy, action, resource, client_id="core-1"):
    context = RequestContext(client_id=client_id, thing={"name": client_id})
    return evaluate([policy], action, resource, context).allowed


@pytest.mark.parametrize("action, resource", v2_permissions("core-1"))
def test_v2_core_policy_allows_every_documented_permission(action, resource):
    assert allowed(v2_policy(), action, resource)


@pytest.mark.parametrize("action, resource", thing_scoped(v2_permissions("core-10")))
def test_v2_core_policy_allows_nothing_of_another_thing(action, resource):
    assert not allowed(v2_policy(), action, resource, client_id="core-10")


def test_v2_core_policy_grants_no_action_beyond_the_documented_list():
    documented = {action for action, _ in v2_permissions("core-1")}
    granted = {action for statement in v2_policy().statements for action in statement.actions}
    assert granted == documented, granted ^ documented


def test_v2_core_policy_other_alias_and_client_suffix_refused():
    policy = v2_policy()
    assert not allowed(policy, "iot:AssumeRoleWithCertificate", ARN + "rolealias/AdminRoleAlias")
    assert not allowed(policy, "iot:Connect", ARN + "client/core-1-extra")
    assert not allowed(policy, "iot:Publish", ARN + "topic/other-team/data")


def test_detector_topics_are_allowed_on_both_generations():
    for policy in (v2_policy(), v1_policy()):
        assert allowed(policy, "iot:Subscribe", ARN + "topicfilter/blog/infer/input")
        assert allowed(policy, "iot:Receive", ARN + "topic/blog/infer/input")
        assert allowed(policy, "iot:Publish", ARN + "topic/blog/infer/output")


def v1_permissions(thing, group="group-1"):
    thing_arn = ARN + "thing/" + thing
    deployments = GG + "/greengrass/groups/%s/deployments/" % group
    return [
        ("iot:Connect", ARN + "client/" + thing),
        ("iot:Publish", ARN + "topic/$aws/things/%s/shadow/update" % thing),
        ("iot:Subscribe", ARN + "topicfilter/$aws/things/%s/shadow/update/accepted" % thing),
        ("iot:Receive", ARN + "topic/$aws/things/%s/shadow/update/accepted" % thing),
        ("iot:Subscribe", ARN + "topicfilter/$aws/things/%s-gda/shadow/update/delta" % thing),
        ("iot:GetThingShadow", thing_arn),
        ("iot:UpdateThingShadow", thing_arn),
        ("iot:DeleteThingShadow", thing_arn),
        ("greengrass:AssumeRoleForGroup", "*"),
        ("greengrass:CreateCertificate", "*"),
        ("greengrass:GetDeployment", deployments + "d-1"),
        ("greengrass:GetDeploymentArtifacts", deployments + "d-1"),
        ("greengrass:UpdateCoreDeploymentStatus", deployments + "d-1/cores/" + quote(thing_arn, safe="")),
        ("greengrass:GetConnectivityInfo", thing_arn),
        ("greengrass:UpdateConnectivityInfo", thing_arn),
    ]


@pytest.mark.parametrize("action, resource", v1_permissions("core-1"))
def test_v1_core_policy_allows_every_documented_permission(action, resource):
    assert allowed(v1_policy(), action, resource)


@pytest.mark.parametrize("action, resource", [p for p in v1_permissions("core-10", group="group-2") if p[1] != "*"])
def test_v1_core_policy_allows_nothing_of_another_core_or_group(action, resource):
    assert not allowed(v1_policy(), action, resource, client_id="core-10")


def test_v1_core_reports_deployment_status_only_for_itself():
    other_core = quote(ARN + "thing/core-2", safe="")
    resource = GG + "/greengrass/groups/group-1/deployments/d-1/cores/" + other_core
    assert not allowed(v1_policy(), "greengrass:UpdateCoreDeploymentStatus", resource)


def test_v1_core_policy_grants_no_action_beyond_the_documented_list():
    documented = {action for action, _ in v1_permissions("core-1")}
    granted = {action for statement in v1_policy().statements for action in statement.actions}
    assert granted == documented, granted ^ documented
