"""_iot: the Greengrass V2 token exchange part of the default policy, role alias names, thing-group races."""

from __future__ import annotations

import botocore.exceptions
import pytest
from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot
from ansible_collections.edgeml.greengrass.plugins.module_utils._iot import InputError

ARGS = ("core-1", "aws", "eu-west-1", "123456789012", ["blog/infer/"], False)


def test_token_exchange_allows_assume_role_on_the_named_aliases_only():
    document = iot.default_policy_document(*ARGS, token_exchange_role_aliases=["TokenExchangeAlias"])
    assume = [s for s in document["Statement"] if "iot:AssumeRoleWithCertificate" in s["Action"]]
    assert assume == [
        {
            "Effect": "Allow",
            "Action": ["iot:AssumeRoleWithCertificate"],
            "Resource": ["arn:aws:iot:eu-west-1:123456789012:rolealias/TokenExchangeAlias"],
        }
    ]


@pytest.mark.parametrize("aliases", [None, []])
def test_without_aliases_the_policy_is_what_it_was(aliases):
    before = iot.default_policy_document(*ARGS)
    assert iot.default_policy_document(*ARGS, token_exchange_role_aliases=aliases) == before
    assert not any("iot:AssumeRoleWithCertificate" in s["Action"] for s in before["Statement"])


@pytest.mark.parametrize("name", ["GreengrassV2TokenExchangeRoleAlias", "a", "x=y,z@w-_"])
def test_role_alias_names_accepted(name):
    assert iot.validate_role_alias_name(name) == name


@pytest.mark.parametrize("name", ["", "bad/alias", "a.b", "a" * 129, None])
def test_role_alias_names_refused_naming_the_input(name):
    with pytest.raises(InputError, match="^token_exchange_role_aliases: "):
        iot.validate_role_alias_name(name, option="token_exchange_role_aliases")


class _RacingClient:
    """An IoT client whose group was just made by another device: create says it exists."""

    def create_thing_group(self, thingGroupName):
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "ResourceAlreadyExistsException", "Message": "exists"}}, "CreateThingGroup"
        )

    def describe_thing_group(self, thingGroupName):
        return {
            "thingGroupName": thingGroupName,
            "thingGroupArn": "arn:aws:iot:eu-west-1:1:thinggroup/" + thingGroupName,
        }


def test_a_group_created_meanwhile_is_used():
    assert iot.create_thing_group(_RacingClient(), "fleet")["thingGroupName"] == "fleet"
