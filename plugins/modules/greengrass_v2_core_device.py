#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: greengrass_v2_core_device
short_description: Remove an AWS IoT Greengrass V2 core device record
version_added: 0.1.0
description:
  - Removes a Greengrass V2 core device from the list of core devices (C(DeleteCoreDevice)), as when a device is
    decommissioned. The AWS IoT thing is not deleted (use M(edgeml.greengrass.iot_device_identity) with
    O(edgeml.greengrass.iot_device_identity#module:state=absent)).
  - Core devices register themselves when their nucleus first connects, so this module only removes them. Stop the
    nucleus on the device first, or it registers the core device again at its next status update.
  - A core device that is not there is reported unchanged, so the task is safe to repeat (also after a lost response).
author:
  - edgeml.greengrass contributors (@edgeml)
options:
  thing_name:
    description: The core device's AWS IoT thing name, 1 to 128 characters from C([a-zA-Z0-9:_-]).
    type: str
    required: true
  state:
    description: Only V(absent) (a core device cannot be created through the API).
    type: str
    choices: [absent]
    default: absent
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Forget a decommissioned core device
  edgeml.greengrass.greengrass_v2_core_device:
    thing_name: edge-07
    state: absent
"""

RETURN = r"""
core_device:
  description: The core device before the run (status, platform, architecture, nucleus version); null when there was
    none.
  returned: always
  type: dict
  contains:
    thing_name:
      description: The core device's thing name.
      type: str
      sample: edge-07
    status:
      description: HEALTHY or UNHEALTHY.
      type: str
      sample: HEALTHY
    core_version:
      description: The nucleus version it last reported.
      type: str
      sample: 2.16.1
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v2 as gg2  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot  # noqa: E402


def view(described):
    if described is None:
        return None
    return {
        "thing_name": described.get("coreDeviceThingName"),
        "status": described.get("status"),
        "platform": described.get("platform"),
        "architecture": described.get("architecture"),
        "core_version": described.get("coreVersion"),
    }


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            thing_name=dict(type="str", required=True),
            state=dict(type="str", choices=["absent"], default="absent"),
        ),
        supports_check_mode=True,
    )
    thing_name = module.params["thing_name"]
    try:
        iot.validate_thing_name(thing_name)
    except iot.InputError as error:
        module.fail_json(msg=str(error))

    client = module.client("greengrassv2")
    try:
        before = view(gg2.get_core_device(client, thing_name))
        changed = before is not None
        if changed and not module.check_mode:
            # False when it went away in between (or a lost response's retry): the end state is the same.
            gg2.delete_core_device(client, thing_name)
    except AWSCallError as error:
        fail_aws_call(module, error, "Greengrass V2 core device {0}".format(thing_name))

    result = dict(changed=changed, core_device=before)
    if module._diff:
        result["diff"] = dict(before=before or {}, after={})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
