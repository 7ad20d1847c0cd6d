"""The test bed's AWS IoT policy evaluator against AWS's own documented policy examples.

Each policy below is copied from the AWS IoT Core developer guide page named in its test (public source:
awsdocs/aws-iot-docs, doc_source/<page>.md) with the account and region the page uses.
"""

from __future__ import annotations

import json

import pytest

from testbed.iot_data_plane.policy import PolicyError, RequestContext, evaluate, parse_policy

ARN = "arn:aws:iot:us-east-1:123456789012:"


def policy(*statements, name="p"):
    return parse_policy(name, {"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions, resources, **extra):
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def thing_context(client_id, attached=True, **thing):
    return RequestContext(client_id=client_id, thing={"name": client_id, **thing} if attached else None)


def allowed(policies, action, resource, context):
    return evaluate(policies if isinstance(policies, list) else [policies], action, resource, context).allowed


# pub-sub-policy.md, "Registered devices (5)": connect as the thing, publish under the thing name.
REGISTERED_5 = policy(
    allow(["iot:Connect"], [ARN + "client/${iot:Connection.Thing.ThingName}"]),
    allow(["iot:Publish"], [ARN + "topic/${iot:Connection.Thing.ThingName}/*"]),
)


def test_registered_devices_5_connect_only_as_the_attached_thing():
    assert allowed(REGISTERED_5, "iot:Connect", ARN + "client/thing1", thing_context("thing1"))
    # The thing variables resolve only for a thing attached to the certificate: no match otherwise.
    assert not allowed(REGISTERED_5, "iot:Connect", ARN + "client/thing1", thing_context("thing1", attached=False))


def test_registered_devices_5_publish_under_own_name_only():
    ctx = thing_context("thing1")
    assert allowed(REGISTERED_5, "iot:Publish", ARN + "topic/thing1/telemetry", ctx)
    assert allowed(REGISTERED_5, "iot:Publish", ARN + "topic/thing1/a/b/c", ctx)
    assert not allowed(REGISTERED_5, "iot:Publish", ARN + "topic/thing2/telemetry", ctx)
    assert not allowed(REGISTERED_5, "iot:Subscribe", ARN + "topicfilter/thing1/telemetry", ctx)


# pub-sub-policy.md, "Unregistered devices (5)": listed client IDs, publish under ${iot:ClientId}.
UNREGISTERED_5 = policy(
    allow(["iot:Connect"], [ARN + "client/client1", ARN + "client/client2", ARN + "client/client3"]),
    allow(["iot:Publish"], [ARN + "topic/${iot:ClientId}/*"]),
)


@pytest.mark.parametrize("client, ok", [("client1", True), ("client3", True), ("client4", False), ("client", False)])
def test_unregistered_devices_5_client_ids(client, ok):
    assert allowed(UNREGISTERED_5, "iot:Connect", ARN + "client/" + client, RequestContext(client_id=client)) is ok


def test_client_id_variable_is_substituted_literally():
    # basic-policy-variables.md: the substituted value is the client's ID; a "*" in it is no wildcard.
    star = RequestContext(client_id="*")
    assert allowed(UNREGISTERED_5, "iot:Publish", ARN + "topic/*/x", star)
    assert not allowed(UNREGISTERED_5, "iot:Publish", ARN + "topic/client1/x", star)


# pub-sub-policy.md, "Registered devices (4)": "+" in a topicfilter resource is a literal character.
REGISTERED_4 = policy(
    allow(["iot:Connect"], [ARN + "client/${iot:Connection.Thing.ThingName}"]),
    allow(["iot:Subscribe"], [ARN + "topicfilter/some/+/topic"]),
)


def test_mqtt_wildcards_in_policies_are_literal():
    ctx = thing_context("thing1")
    assert allowed(REGISTERED_4, "iot:Subscribe", ARN + "topicfilter/some/+/topic", ctx)
    assert not allowed(REGISTERED_4, "iot:Subscribe", ARN + "topicfilter/some/string1/topic", ctx)
    assert not allowed(REGISTERED_4, "iot:Subscribe", ARN + "topicfilter/some/#", ctx)


def test_star_in_topicfilter_matches_the_literal_filters_it_covers():
    # pub-sub-policy.md, "Registered devices (4)", second policy: topicfilter/some/*/topic.
    p = policy(allow(["iot:Subscribe"], [ARN + "topicfilter/some/*/topic"]))
    ctx = thing_context("thing1")
    assert allowed(p, "iot:Subscribe", ARN + "topicfilter/some/string1/topic", ctx)
    assert allowed(p, "iot:Subscribe", ARN + "topicfilter/some/+/topic", ctx)  # "+" is just a character
    assert not allowed(p, "iot:Subscribe", ARN + "topicfilter/some/string1/other", ctx)


def test_explicit_deny_wins_over_allow():
    # pub-sub-policy.md, "Registered devices (9)" (with the documented thing variable).
    p = policy(
        allow(["iot:Publish"], [ARN + "topic/${iot:Connection.Thing.ThingName}/*"]),
        {
            "Effect": "Deny",
            "Action": ["iot:Publish"],
            "Resource": [ARN + "topic/${iot:Connection.Thing.ThingName}/bar"],
        },
    )
    ctx = thing_context("thing1")
    assert allowed(p, "iot:Publish", ARN + "topic/thing1/foo", ctx)
    decision = evaluate([p], "iot:Publish", ARN + "topic/thing1/bar", ctx)
    assert not decision.allowed and "explicitly denied" in decision.reason


def test_union_of_attached_policies_and_deny_from_another_policy():
    connect = policy(allow("iot:Connect", ARN + "client/c1"), name="connect")
    publish = policy(allow("iot:Publish", ARN + "topic/a/*"), name="publish")
    deny = parse_policy(
        "deny",
        json.dumps({"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "iot:*", "Resource": "*"}}),
    )
    ctx = RequestContext(client_id="c1")
    assert allowed([connect, publish], "iot:Connect", ARN + "client/c1", ctx)
    assert allowed([connect, publish], "iot:Publish", ARN + "topic/a/b", ctx)
    assert not allowed([connect], "iot:Publish", ARN + "topic/a/b", ctx)
    assert not allowed([connect, publish, deny], "iot:Connect", ARN + "client/c1", ctx)
    assert not allowed([], "iot:Connect", ARN + "client/c1", ctx)


def test_is_attached_condition():
    # thing-policy-variables.md: "Bool": {"iot:Connection.Thing.IsAttached": ["true"]}.
    p = policy(allow(["iot:Connect"], ["*"], Condition={"Bool": {"iot:Connection.Thing.IsAttached": ["true"]}}))
    assert allowed(p, "iot:Connect", ARN + "client/thing1", thing_context("thing1"))
    assert not allowed(p, "iot:Connect", ARN + "client/thing1", thing_context("thing1", attached=False))


def test_thing_attribute_and_certificate_variables():
    p = policy(
        allow("iot:Publish", ARN + "topic/${iot:Connection.Thing.Attributes[site]}/*"),
        allow("iot:Connect", ARN + "client/${iot:Certificate.Subject.CommonName}"),
    )
    ctx = RequestContext(client_id="cam-1", thing={"name": "cam-1", "attributes": {"site": "plant7"}})
    ctx.certificate = {"Subject.CommonName": "cam-1"}
    assert allowed(p, "iot:Publish", ARN + "topic/plant7/x", ctx)
    assert not allowed(p, "iot:Publish", ARN + "topic/plant8/x", ctx)
    assert allowed(p, "iot:Connect", ARN + "client/cam-1", ctx)
    # An attribute the thing does not have is unresolved: that resource matches nothing.
    ctx.thing = {"name": "cam-1", "attributes": {}}
    assert not allowed(p, "iot:Publish", ARN + "topic/plant7/x", ctx)


def test_question_mark_and_case_rules():
    p = policy(allow("IOT:publish", ARN + "topic/room?"))
    ctx = RequestContext(client_id="c")
    assert allowed(p, "iot:Publish", ARN + "topic/room1", ctx)  # actions are case-insensitive
    assert not allowed(p, "iot:Publish", ARN + "topic/room12", ctx)
    assert not allowed(p, "iot:Publish", ARN + "topic/ROOM1", ctx)  # resources are not


@pytest.mark.parametrize(
    "document, message",
    [
        ("{not json", "not JSON"),
        ({"Statement": [allow("iot:Connect", "*")]}, "Version must be"),
        ({"Version": "2012-10-17", "Statement": []}, "non-empty list"),
        ({"Version": "2012-10-17", "Statement": [{"Effect": "Permit", "Action": "iot:*", "Resource": "*"}]}, "Effect"),
        ({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*"}]}, "both Action and Resource"),
        ({"Version": "2012-10-17", "Statement": [allow("iot:Connect", "")]}, "non-empty string"),
        ({"Version": "2012-10-17", "Statement": [allow("connect", "*")]}, "not service:action"),
        (
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "NotAction": "iot:Publish", "Resource": "*"}]},
            "does not emulate",
        ),
        (
            {"Version": "2012-10-17", "Statement": [allow("iot:Connect", ARN + "client/${iot:Unknown}")]},
            "does not know",
        ),
        (
            {"Version": "2012-10-17", "Statement": [allow("iot:Connect", ARN + "client/${aws:SourceIp}")]},
            "does not know",
        ),
        (
            {
                "Version": "2012-10-17",
                "Statement": [allow("iot:Connect", "*", Condition={"IpAddress": {"aws:SourceIp": "1.2.3.4/32"}})],
            },
            "does not emulate",
        ),
        ({"Version": "2012-10-17", "Statement": [allow("iot:Connect", "*", Extra=1)]}, "unknown elements"),
    ],
)
def test_malformed_or_unemulated_documents_are_refused_never_allowed(document, message):
    with pytest.raises(PolicyError, match=message) as raised:
        parse_policy("bad-policy", document)
    assert "bad-policy" in str(raised.value)
