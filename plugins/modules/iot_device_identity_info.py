#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iot_device_identity_info
short_description: Read one device's AWS IoT identity (thing, certificates, policies, endpoints)
version_added: 0.1.0
description:
  - Reads what M(edgeml.greengrass.iot_device_identity) manages for one thing, without writing anything -
    the thing, its thing groups, the certificates attached to it with their status, the policies
    attached to each certificate, and the account's data and credentials endpoints.
  - Optionally counts the account's things, certificates and policies, which tests use to prove
    that removal left nothing behind.
author:
  - edgeml.greengrass maintainers (@edgeml)
options:
  thing_name:
    description:
      - Name of the AWS IoT thing.
    type: str
    required: true
  count_account_resources:
    description:
      - Also return RV(account_counts), the number of things, certificates and policies in the account and region.
    type: bool
    default: false
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Read the device's identity
  edgeml.greengrass.iot_device_identity_info:
    thing_name: "{{ inventory_hostname }}"
  delegate_to: localhost
  register: identity_info

- name: The device has exactly one ACTIVE certificate
  ansible.builtin.assert:
    that:
      - identity_info.exists
      - identity_info.certificates | selectattr('status', 'equalto', 'ACTIVE') | list | length == 1
"""

RETURN = r"""
exists:
  description: Whether the thing exists.
  returned: always
  type: bool
thing:
  description: The thing (C(null) when it does not exist).
  returned: always
  type: dict
  contains:
    name:
      description: Thing name.
      type: str
    arn:
      description: Thing ARN.
      type: str
    attributes:
      description: Thing attributes.
      type: dict
    thing_groups:
      description: Names of the thing groups it belongs to.
      type: list
      elements: str
certificates:
  description: Certificates attached to the thing.
  returned: always
  type: list
  elements: dict
  contains:
    arn:
      description: Certificate ARN.
      type: str
    id:
      description: Certificate ID.
      type: str
    status:
      description: Certificate status.
      type: str
      sample: ACTIVE
    pem:
      description: The certificate (public).
      type: str
    policies:
      description: Names of the policies attached to the certificate.
      type: list
      elements: str
policies:
  description: Every policy attached to any of the thing's certificates, with its default document.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Policy name.
      type: str
    arn:
      description: Policy ARN.
      type: str
    document:
      description: Default version's document.
      type: dict
    default_version_id:
      description: ID of the default version.
      type: str
    version_count:
      description: Number of versions the policy has.
      type: int
endpoints:
  description: The data (C(iot:Data-ATS)) and credentials (C(iot:CredentialProvider)) endpoints.
  returned: always
  type: dict
  contains:
    data:
      description: Data endpoint.
      type: str
    credentials:
      description: Credentials provider endpoint.
      type: str
account_counts:
  description: Number of things, certificates and policies in the account and region.
  returned: when I(count_account_resources=true)
  type: dict
  sample: {"things": 0, "certificates": 0, "policies": 0}
"""

import json  # noqa: E402

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._iot import InputError  # noqa: E402


def read_identity(client, thing_name):
    thing = iot.describe_thing(client, thing_name)
    result = {"exists": thing is not None, "thing": None, "certificates": [], "policies": []}
    if thing is None:
        return result
    result["thing"] = {
        "name": thing["thingName"],
        "arn": thing["thingArn"],
        "attributes": thing.get("attributes", {}),
        "thing_groups": sorted(iot.list_thing_groups_for_thing(client, thing_name)),
    }
    policy_names = []
    for cert in iot.attached_certificates(client, thing_name):
        names = [p["policyName"] for p in iot.list_attached_policies(client, cert["arn"])]
        result["certificates"].append(
            {"arn": cert["arn"], "id": cert["id"], "status": cert["status"], "pem": cert["pem"], "policies": names}
        )
        policy_names.extend(n for n in names if n not in policy_names)
    for name in policy_names:
        policy = iot.get_policy(client, name)
        if policy is None:
            continue
        result["policies"].append(
            {
                "name": policy["policyName"],
                "arn": policy["policyArn"],
                "document": json.loads(policy["policyDocument"]),
                "default_version_id": policy.get("defaultVersionId"),
                "version_count": len(iot.list_policy_versions(client, name)),
            }
        )
    return result


def main():
    argument_spec = dict(
        thing_name=dict(type="str", required=True),
        count_account_resources=dict(type="bool", default=False),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        iot.validate_thing_name(module.params["thing_name"])
    except InputError as exc:
        module.fail_json(msg=str(exc))

    client = module.client("iot")
    try:
        result = read_identity(client, module.params["thing_name"])
        result["endpoints"] = iot.describe_endpoints(client)
        if module.params["count_account_resources"]:
            result["account_counts"] = iot.count_account_resources(client)
    except AWSCallError as exc:
        fail_aws_call(module, exc, None)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
