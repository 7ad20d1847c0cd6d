#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iot_role_alias
short_description: Manage an AWS IoT role alias (the token exchange of Greengrass V2 core devices)
version_added: 0.2.0
description:
  - Creates, updates or deletes an AWS IoT role alias. A device whose certificate's policy allows
    C(iot:AssumeRoleWithCertificate) on the alias gets temporary AWS credentials of the alias's IAM role
    from the credentials provider endpoint; the Greengrass V2 nucleus names the alias in C(iotRoleAlias).
  - An existing alias is updated in place when its role or credential duration differ.
  - Every input is validated before any AWS call.
author:
  - edgeml.greengrass contributors (@edgeml)
options:
  name:
    description: Name of the role alias, 1 to 128 characters from C([a-zA-Z0-9_=,@-]).
    type: str
    required: true
    aliases: [role_alias]
  role_arn:
    description:
      - ARN of the IAM role the alias points at. Its trust policy must allow C(credentials.iot.amazonaws.com).
      - Required with O(state=present).
    type: str
  credential_duration_seconds:
    description: How long the credentials the alias gives out are valid (900 to 43200 seconds).
    type: int
    default: 3600
  state:
    description: Whether the role alias should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - Supports check mode and diff mode. In check mode an alias that would be created has no ARN.
"""

EXAMPLES = r"""
- name: Token exchange role of the Greengrass V2 core devices
  amazon.aws.iam_role:
    name: GreengrassV2TokenExchangeRole
    assume_role_policy_document:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Principal:
            Service: credentials.iot.amazonaws.com
          Action: sts:AssumeRole
  register: token_exchange_role

- name: Role alias the nucleus names in iotRoleAlias
  edgeml.greengrass.iot_role_alias:
    name: GreengrassV2TokenExchangeRoleAlias
    role_arn: "{{ token_exchange_role.iam_role.arn }}"

- name: Remove the role alias
  edgeml.greengrass.iot_role_alias:
    name: GreengrassV2TokenExchangeRoleAlias
    state: absent
"""

RETURN = r"""
role_alias:
  description: The role alias after the run (predicted in check mode); null when it does not exist.
  returned: always
  type: dict
  contains:
    name:
      description: Role alias name.
      type: str
      sample: GreengrassV2TokenExchangeRoleAlias
    arn:
      description: Role alias ARN (null in check mode for an alias not created yet).
      type: str
      sample: arn:aws:iot:eu-west-1:123456789012:rolealias/GreengrassV2TokenExchangeRoleAlias
    role_arn:
      description: IAM role the alias points at.
      type: str
    credential_duration_seconds:
      description: Lifetime of the credentials in seconds.
      type: int
"""

import re  # noqa: E402

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot  # noqa: E402

ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
DURATION_RANGE = (900, 43200)


def validate(params):
    iot.validate_role_alias_name(params["name"], option="name")
    duration = params["credential_duration_seconds"]
    if not DURATION_RANGE[0] <= duration <= DURATION_RANGE[1]:
        raise iot.InputError(
            "credential_duration_seconds: {0} is out of range; expected {1} to {2} seconds".format(
                duration, DURATION_RANGE[0], DURATION_RANGE[1]
            )
        )
    if params["state"] == "present":
        role_arn = params["role_arn"]
        if not role_arn:
            raise iot.InputError("role_arn: required with state=present (the IAM role the alias points at)")
        if not ROLE_ARN_RE.match(role_arn):
            raise iot.InputError(
                "role_arn: {0!r} is not an IAM role ARN; expected arn:aws:iam::<account>:role/<name>".format(role_arn)
            )


def view(description):
    if description is None:
        return None
    return {
        "name": description["roleAlias"],
        "arn": description.get("roleAliasArn"),
        "role_arn": description["roleArn"],
        "credential_duration_seconds": description.get("credentialDurationSeconds"),
    }


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True, aliases=["role_alias"]),
            role_arn=dict(type="str"),
            credential_duration_seconds=dict(type="int", default=3600),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        validate(params)
    except iot.InputError as error:
        module.fail_json(msg=str(error))

    client = module.client("iot")
    name = params["name"]
    try:
        before = view(iot.describe_role_alias(client, name))
        after = before
        if params["state"] == "absent":
            after = None
            if before is not None and not module.check_mode:
                iot.delete_role_alias(client, name)
        else:
            wanted = {
                "name": name,
                "arn": before["arn"] if before else None,
                "role_arn": params["role_arn"],
                "credential_duration_seconds": params["credential_duration_seconds"],
            }
            if before != wanted:
                after = wanted
                if not module.check_mode:
                    args = (client, name, params["role_arn"], params["credential_duration_seconds"])
                    if before is None:
                        iot.create_role_alias(*args)
                    else:
                        iot.update_role_alias(*args)
                    after = view(iot.describe_role_alias(client, name))
    except AWSCallError as error:
        fail_aws_call(module, error, None)

    changed = before != after
    result = dict(changed=changed, role_alias=after)
    if module._diff:
        result["diff"] = dict(before=before or {}, after=after or {})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
