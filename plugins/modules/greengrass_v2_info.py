#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: greengrass_v2_info
short_description: Read AWS IoT Greengrass V2 components, deployments and core devices
version_added: 0.2.0
description:
  - Lists the account's private Greengrass V2 components with their versions, or one component's versions
    with their content hashes (see M(edgeml.greengrass.greengrass_v2_component)).
  - With O(thing_group), lists the group's deployments (newest first) and its core devices, each with its status
    for the group's latest deployment.
  - Reads only; never changes anything.
author:
  - edgeml.greengrass contributors (@edgeml)
options:
  component_name:
    description: Only this component.
    type: str
  include_recipes:
    description: Add each listed version's recipe (one C(GetComponent) call per version).
    type: bool
    default: false
  thing_group:
    description: Thing group whose deployments and core devices to read.
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Every private component and its versions
  edgeml.greengrass.greengrass_v2_info:
  register: greengrass_v2

- name: The detector group's deployments and how its devices are doing
  edgeml.greengrass.greengrass_v2_info:
    thing_group: edge-detectors
  register: detector_group
"""

RETURN = r"""
components:
  description: Components (only O(component_name) when given), by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Component name.
      type: str
    arn:
      description: Component ARN.
      type: str
    versions:
      description: Versions, newest first, each with C(version), C(arn), C(state), C(recipe_sha256) and, with
        O(include_recipes), C(recipe).
      type: list
      elements: dict
deployments:
  description: The thing group's deployments, newest first.
  returned: with O(thing_group)
  type: list
  elements: dict
core_devices:
  description: The thing group's core devices with C(core_device), C(health) and their C(status) for the latest
    deployment.
  returned: with O(thing_group)
  type: list
  elements: dict
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v2 as gg2  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot  # noqa: E402


def read_components(client, name, include_recipes):
    components = []
    for component in gg2.list_components(client):
        if name and component["componentName"] != name:
            continue
        versions = []
        for item in gg2.list_component_versions(client, component["arn"]):
            view = gg2.component_view(gg2.describe_component(client, item["arn"])) or {"arn": item["arn"]}
            entry = {
                "version": item["componentVersion"],
                "arn": item["arn"],
                "state": view.get("state"),
                "recipe_sha256": view.get("recipe_sha256"),
            }
            if include_recipes:
                entry["recipe"] = gg2.get_component_recipe(client, item["arn"])
            versions.append(entry)
        versions.sort(key=lambda v: gg2.version_key(v["version"]), reverse=True)
        components.append({"name": component["componentName"], "arn": component["arn"], "versions": versions})
    return components


def read_group(module, client, group_name):
    group = iot.describe_thing_group(module.client("iot"), group_name)
    if not group:
        module.fail_json(msg="thing_group %r does not exist" % group_name)
    arn = group["thingGroupArn"]
    summaries = gg2.list_deployments(client, arn, "ALL")
    deployments = [gg2.deployment_view(gg2.get_deployment(client, d["deploymentId"]) or d) for d in summaries]
    latest = [d for d in summaries if d.get("isLatestForTarget")]
    core_devices = []
    for device in gg2.list_core_devices(client, arn):
        name = device["coreDeviceThingName"]
        view = {"core_device": name, "health": device.get("status"), "status": None}
        if latest:
            effective = [
                e
                for e in gg2.list_effective_deployments(client, name)
                if e["deploymentId"] == latest[0]["deploymentId"]
            ]
            view.update(gg2.device_execution(name, effective[0] if effective else None))
        core_devices.append(view)
    return deployments, core_devices


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            component_name=dict(type="str"),
            include_recipes=dict(type="bool", default=False),
            thing_group=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    client = module.client("greengrassv2")
    result = {"changed": False}
    try:
        result["components"] = read_components(
            client, module.params["component_name"], module.params["include_recipes"]
        )
        if module.params["thing_group"]:
            result["deployments"], result["core_devices"] = read_group(module, client, module.params["thing_group"])
    except AWSCallError as error:
        fail_aws_call(module, error, "Reading Greengrass V2 failed")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
