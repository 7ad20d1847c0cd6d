#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: greengrass_v1_group_info
short_description: Read an AWS IoT Greengrass V1 group, its definitions, role and deployments
version_added: 0.1.0
description:
  - Reads one Greengrass V1 group by O(name) or O(group_id) with its latest version resolved into the content
    of each definition version (core, function, resource, subscription, logger), its role and its deployments.
  - Without O(name) and O(group_id), lists every group (id, ARN, name, latest version).
  - O(list_definitions) also lists every definition of the given kinds in the account and region, which
    shows whether anything was left behind.
author:
  - edgeml.greengrass contributors (@edgeml)
options:
  name:
    description: Name of the group. The module fails when several groups share it.
    type: str
  group_id:
    description: Id of the group.
    type: str
  list_definitions:
    description: Kinds of definitions to list, whichever group they belong to.
    type: list
    elements: str
    choices: [core, function, resource, subscription, logger]
    default: []
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Read the detector group
  edgeml.greengrass.greengrass_v1_group_info:
    name: detector-site-a
  register: detector_group_info

- name: Show the model resource the core will download
  ansible.builtin.debug:
    var: detector_group_info.latest_version.resource.content.resources

- name: Count every group and core definition in the region
  edgeml.greengrass.greengrass_v1_group_info:
    list_definitions: [core]
  register: everything
"""

RETURN = r"""
exists:
  description: Whether the group asked for exists (true when listing all groups).
  returned: always
  type: bool
group:
  description: The group; empty when it does not exist or when no group was asked for.
  returned: always
  type: dict
  contains:
    id:
      description: Group id.
      type: str
    arn:
      description: Group ARN.
      type: str
    name:
      description: Group name.
      type: str
    latest_version:
      description: Id of the latest group version.
      type: str
    latest_version_arn:
      description: ARN of the latest group version.
      type: str
latest_version:
  description:
    - Per kind used by the latest group version, the definition, how many versions it has, and the content
      of the version used, with snake_case keys (environment variable names kept as they are).
  returned: when the group exists
  type: dict
  sample:
    subscription:
      definition_id: 6b3e...
      definition_name: detector-site-a-subscriptions
      version: 0c1d...
      version_arn: arn:aws:greengrass:us-east-1:123456789012:greengrass/definition/subscriptions/6b3e/versions/0c1d
      version_count: 2
      content:
        subscriptions:
          - id: subscription-8d2f0c1e5a7b9c3d
            source: cloud
            subject: detections/site-a
            target: arn:aws:iot:us-east-1:123456789012:thing/site-a-core
group_version_count:
  description: How many versions the group has.
  returned: when the group exists
  type: int
role_arn:
  description: ARN of the group role; null when none.
  returned: when the group exists
  type: str
deployments:
  description: The group's deployments, newest first.
  returned: when the group exists
  type: list
  elements: dict
  contains:
    id:
      description: Deployment id.
      type: str
    arn:
      description: Deployment ARN.
      type: str
    type:
      description: Deployment type.
      type: str
    created_at:
      description: Creation time.
      type: str
    group_version_id:
      description: Group version it deployed.
      type: str
latest_deployment_status:
  description: C(GetDeploymentStatus) of the newest deployment (snake_case); empty when never deployed.
  returned: when the group exists
  type: dict
groups:
  description: Every group, when neither O(name) nor O(group_id) is given.
  returned: when neither O(name) nor O(group_id) is given
  type: list
  elements: dict
definitions:
  description: Per kind in O(list_definitions), every definition of that kind as C({id, name, arn, latest_version}).
  returned: when O(list_definitions) is not empty
  type: dict
"""


from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v1 as gg  # noqa: E402


def read_group(client, name, group_id):
    """The group's summary, latest version, deployments and role; {} when there is no such group."""
    group = gg.find_group(client, name=name, group_id=group_id)
    if not group:
        return {}
    deployments = gg.describe_deployments(client, group["Id"])
    latest_status = {}
    if deployments:
        latest_status = gg.snake_content(gg.get_deployment_status(client, group["Id"], deployments[0]["id"]))
    return dict(
        exists=True,
        group=gg.group_summary(group),
        latest_version=gg.describe_group_version(client, group["Id"], group["LatestVersion"])
        if group.get("LatestVersion")
        else {},
        group_version_count=len(gg.list_group_versions(client, group["Id"])),
        role_arn=gg.get_associated_role_arn(client, group["Id"]),
        deployments=deployments,
        latest_deployment_status=latest_status,
    )


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str"),
            group_id=dict(type="str"),
            list_definitions=dict(
                type="list",
                elements="str",
                default=[],
                choices=["core", "function", "resource", "subscription", "logger"],
            ),
        ),
        mutually_exclusive=[("name", "group_id")],
        supports_check_mode=True,
    )
    client = module.client("greengrass")
    name, group_id = module.params["name"], module.params["group_id"]
    result = {"changed": False, "exists": False, "group": {}}
    try:
        if module.params["list_definitions"]:
            result["definitions"] = dict(
                (
                    kind,
                    [
                        {
                            "id": definition.get("Id"),
                            "name": definition.get("Name"),
                            "arn": definition.get("Arn"),
                            "latest_version": definition.get("LatestVersion"),
                        }
                        for definition in gg.list_definitions(client, kind)
                    ],
                )
                for kind in module.params["list_definitions"]
            )
        if not name and not group_id:
            result["groups"] = [gg.group_summary(group) for group in gg.list_groups(client)]
            result["exists"] = True
        else:
            result.update(read_group(client, name, group_id))
    except gg.GreengrassInputError as error:
        module.fail_json(msg=str(error))
    except AWSCallError as error:
        fail_aws_call(module, error, "Could not read Greengrass V1 group %r" % (name or group_id))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
