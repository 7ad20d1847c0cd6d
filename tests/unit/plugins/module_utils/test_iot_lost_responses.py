"""A create whose response was lost and whose retry met "already exists" is the create's own success.

botocore's Stubber answers with the responses AWS IoT gives (no endpoint needed to show how the helper reads
them): CreatePolicy / CreateRoleAlias refused with ResourceAlreadyExistsException, then the read of what exists.
"""

from __future__ import annotations

import json

import boto3
import pytest
from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError
from botocore.stub import Stubber

DOCUMENT = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
POLICY_ARN = "arn:aws:iot:eu-west-1:123456789012:policy/cam-1-policy"
ROLE_ARN = "arn:aws:iam::123456789012:role/edge-tes"
ALIAS_ARN = "arn:aws:iot:eu-west-1:123456789012:rolealias/edge-tes-alias"


@pytest.fixture
def stubbed():
    client = boto3.client("iot", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")  # noqa: S106 (stubbed: never sent)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def already_exists(stubber, operation):
    stubber.add_client_error(operation, "ResourceAlreadyExistsException", "exists", 409)


def existing_alias(stubber, role_arn, duration):
    description = {"roleAlias": "edge-tes-alias", "roleAliasArn": ALIAS_ARN, "roleArn": role_arn}
    stubber.add_response(
        "describe_role_alias", {"roleAliasDescription": dict(description, credentialDurationSeconds=duration)}
    )


def test_policy_that_exists_with_our_document_is_our_create(stubbed):
    client, stubber = stubbed
    already_exists(stubber, "create_policy")
    # The same document, serialized in another key order: the same policy.
    stored = json.dumps({"Statement": DOCUMENT["Statement"], "Version": "2012-10-17"})
    stubber.add_response(
        "get_policy", {"policyName": "cam-1-policy", "policyArn": POLICY_ARN, "policyDocument": stored}
    )
    assert iot.create_policy(client, "cam-1-policy", DOCUMENT)["policyArn"] == POLICY_ARN


def test_policy_that_exists_with_another_document_is_an_error(stubbed):
    client, stubber = stubbed
    already_exists(stubber, "create_policy")
    other = dict(DOCUMENT, Statement=[dict(DOCUMENT["Statement"][0], Action="iot:*")])
    stubber.add_response(
        "get_policy", {"policyName": "cam-1-policy", "policyArn": POLICY_ARN, "policyDocument": json.dumps(other)}
    )
    with pytest.raises(AWSCallError) as raised:
        iot.create_policy(client, "cam-1-policy", DOCUMENT)
    assert iot.error_code(raised.value) == "ResourceAlreadyExistsException"


def test_role_alias_that_exists_for_our_role_is_our_create(stubbed):
    client, stubber = stubbed
    already_exists(stubber, "create_role_alias")
    existing_alias(stubber, ROLE_ARN, 3600)
    created = iot.create_role_alias(client, "edge-tes-alias", ROLE_ARN, 3600)
    assert created == {"roleAlias": "edge-tes-alias", "roleAliasArn": ALIAS_ARN}


@pytest.mark.parametrize("role_arn, duration", [(ROLE_ARN + "-other", 3600), (ROLE_ARN, 900)])
def test_role_alias_that_exists_otherwise_is_an_error(stubbed, role_arn, duration):
    client, stubber = stubbed
    already_exists(stubber, "create_role_alias")
    existing_alias(stubber, role_arn, duration)
    with pytest.raises(AWSCallError):
        iot.create_role_alias(client, "edge-tes-alias", ROLE_ARN, 3600)
