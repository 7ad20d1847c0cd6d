#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iot_thing_group
short_description: Create an AWS IoT thing group, or delete it once nothing uses it
version_added: 0.1.0
description:
  - O(state=present) creates the (static) thing group when it is missing.
  - O(state=absent) deletes the group only when nothing uses it any more - no thing in it, no child group, no
    Greengrass V2 deployment targeting it - and otherwise keeps it and says why in RV(kept_because). A thing group is
    often shared (another team's devices or deployments), and deleting one that is in use would take their devices
    out of their deployments.
author:
  - edgeml.greengrass contributors (@edgeml)
options:
  name:
    description: Name of the thing group, 1 to 128 characters from C([a-zA-Z0-9:_-]).
    type: str
    required: true
  state:
    description: Whether the thing group should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Remove the fleet's thing group once its devices are decommissioned
  edgeml.greengrass.iot_thing_group:
    name: edgeml-detectors
    state: absent
"""

RETURN = r"""
thing_group:
  description: The thing group after the run (predicted in check mode); null when it does not exist.
  returned: always
  type: dict
  contains:
    name:
      description: Thing group name.
      type: str
      sample: edgeml-detectors
    arn:
      description: Thing group ARN (null in check mode for a group not created yet).
      type: str
kept_because:
  description: With O(state=absent), why an existing group was kept (empty when it was deleted or did not exist).
  returned: always
  type: list
  elements: str
  sample: ["2 things are in it: edge-07, edge-08"]
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v2 as gg2  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot  # noqa: E402


def view(described):
    if described is None:
        return None
    return {"name": described["thingGroupName"], "arn": described.get("thingGroupArn")}


def uses(client, greengrass, group):
    """Why the group is still in use (empty when nothing uses it)."""
    reasons = []
    things = iot.list_things_in_thing_group(client, group["name"])
    if things:
        reasons.append("{0} things are in it: {1}".format(len(things), ", ".join(sorted(things)[:10])))
    children = iot.list_child_thing_groups(client, group["name"])
    if children:
        reasons.append("it has child groups: {0}".format(", ".join(sorted(children))))
    deployments = gg2.list_deployments(greengrass, group["arn"], "ALL")
    if deployments:
        names = sorted(d.get("deploymentName") or d["deploymentId"] for d in deployments)
        reasons.append("Greengrass V2 deployments target it: {0}".format(", ".join(names)))
    return reasons


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    name = module.params["name"]
    try:
        iot.validate_thing_name(name, option="name")
    except iot.InputError as error:
        module.fail_json(msg=str(error))

    client = module.client("iot")
    kept_because = []
    try:
        before = view(iot.describe_thing_group(client, name))
        after = before
        if module.params["state"] == "present":
            if before is None:
                after = {"name": name, "arn": None}
                if not module.check_mode:
                    after = view(iot.create_thing_group(client, name))
        elif before is not None:
            kept_because = uses(client, module.client("greengrassv2"), before)
            if not kept_because:
                after = None
                if not module.check_mode:
                    iot.delete_thing_group(client, name)
    except AWSCallError as error:
        fail_aws_call(module, error, "thing group {0}".format(name))

    result = dict(changed=before != after, thing_group=after, kept_because=kept_because)
    if module._diff:
        result["diff"] = dict(before=before or {}, after=after or {})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
