#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: greengrass_v1_group
short_description: Create, update or remove an AWS IoT Greengrass V1 group with its definitions
version_added: 0.1.0
description:
  - Keeps an AWS IoT Greengrass V1 group, its core, function, resource, subscription and logger
    definitions and the group role as asked, replacing C(greengo create), C(greengo update) and C(greengo remove).
  - The group is found by O(name); the module fails when several groups share that name, unless all but one
    of them were never deployed and hold exactly its latest version (what a retried create leaves; see below).
  - Each definition is named after the group (C(<name>-core), C(<name>-functions), C(<name>-resources),
    C(<name>-subscriptions), C(<name>-loggers)); a definition referenced by the group under another name
    belongs to someone else and is never changed or deleted.
  - A new definition version is created only when the asked content differs from that definition's latest
    version (after ordering lists by id and dropping API defaults); a new group version only when any
    definition version ARN changed. A run that changes nothing makes no write call.
  - Subscription, function and logger ids are derived from their content when not given, so they are
    stable from run to run; a resource id defaults to its name.
  - Every input is checked before any AWS call; a wrong one fails naming the input and nothing is written.
    When creating a new group fails part way, what this run created is deleted again.
  - Greengrass V1 documents no idempotency for its group and definition creates, so a create that a client
    retried after its answer was lost makes a second one. After a run that created a group or definitions, the
    other groups with its name that hold exactly its first version and were never deployed, and the definitions
    named after it that no version of it uses, are deleted
    (RV(deleted_duplicate_groups), RV(deleted_orphan_definitions)).
  - AWS discontinued Greengrass V1 on 2026-10-07; this module is the V1 reference path.
author:
  - edgeml.greengrass contributors (@edgeml)
options:
  name:
    description:
      - Name of the Greengrass group. Definitions are named after it.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the group; V(absent) resets its deployments, removes its role,
        deletes the group and every definition named after it that any of its versions referenced.
    type: str
    choices: [present, absent]
    default: present
  core:
    description:
      - The group's core. Required when O(state=present).
    type: dict
    suboptions:
      thing_arn:
        description: ARN of the core's IoT thing, C(arn:aws:iot:<region>:<account>:thing/<name>).
        type: str
        required: true
      certificate_arn:
        description: ARN of the core's certificate, C(arn:aws:iot:<region>:<account>:cert/<64 hex digits>).
        type: str
        required: true
      sync_shadow:
        description: Whether the core's local shadow syncs with the cloud.
        type: bool
        default: true
      id:
        description: Id of the core in the definition; defaults to the thing name.
        type: str
  functions:
    description:
      - Lambda functions of the group (C(CreateFunctionDefinitionVersion) C(Functions)). Omitted or empty means none.
    type: list
    elements: dict
    suboptions:
      function_arn:
        description: Qualified Lambda ARN (version or alias; C($LATEST) is not allowed by Greengrass).
        type: str
        required: true
      id:
        description: Id in the definition; defaults to one derived from O(functions[].function_arn).
        type: str
      pinned:
        description: Long-lived (pinned) function.
        type: bool
      memory_size:
        description: Memory in KB.
        type: int
      timeout:
        description: Seconds before a call is stopped.
        type: int
      encoding_type:
        description: Payload encoding.
        type: str
        choices: [json, binary]
      executable:
        description: Executable name (non-Lambda runtimes).
        type: str
      exec_args:
        description: Executable arguments.
        type: str
      environment:
        description: The function's environment on the core.
        type: dict
        suboptions:
          variables:
            description: Environment variables.
            type: dict
          access_sysfs:
            description: Whether the function may read C(/sys).
            type: bool
          resource_access_policies:
            description: Resources of O(resources) the function may use.
            type: list
            elements: dict
            suboptions:
              resource_id:
                description: Id of an entry of O(resources).
                type: str
                required: true
              permission:
                description: Read-only or read-write.
                type: str
                choices: [ro, rw]
                default: ro
          execution:
            description: Isolation mode and identity of this function.
            type: dict
            suboptions:
              isolation_mode:
                description: Run in a Greengrass container or as a plain process.
                type: str
                choices: [GreengrassContainer, NoContainer]
              run_as:
                description: Identity the function runs as.
                type: dict
                suboptions:
                  uid:
                    description: User id.
                    type: int
                  gid:
                    description: Group id.
                    type: int
  default_config:
    description:
      - Default execution settings of every function (C(DefaultConfig)); used only with O(functions).
    type: dict
    suboptions:
      execution:
        description: Default isolation mode and identity.
        type: dict
        suboptions:
          isolation_mode:
            description: Run in a Greengrass container or as a plain process.
            type: str
            choices: [GreengrassContainer, NoContainer]
          run_as:
            description: Identity functions run as.
            type: dict
            suboptions:
              uid:
                description: User id.
                type: int
              gid:
                description: Group id.
                type: int
  resources:
    description:
      - Local and machine learning resources (C(CreateResourceDefinitionVersion) C(Resources)).
        Omitted or empty means none.
    type: list
    elements: dict
    suboptions:
      name:
        description: Resource name, unique in the group.
        type: str
        required: true
      id:
        description: Id that functions refer to; defaults to O(resources[].name).
        type: str
      resource_data_container:
        description: Exactly one kind of resource.
        type: dict
        required: true
        suboptions:
          local_device_resource_data:
            description: A device file under C(/dev).
            type: dict
            suboptions:
              source_path:
                description: Device path on the core, under C(/dev/).
                type: str
                required: true
              group_owner_setting:
                description: Linux group owner added to the function's process.
                type: dict
                suboptions:
                  auto_add_group_owner:
                    description: Add the file's group owner to the process.
                    type: bool
                  group_owner:
                    description: Name of a Linux group to add instead.
                    type: str
          local_volume_resource_data:
            description: A directory of the core mounted into the function.
            type: dict
            suboptions:
              source_path:
                description: Absolute path on the core (not under C(/sys)).
                type: str
                required: true
              destination_path:
                description: Absolute path inside the function.
                type: str
                required: true
              group_owner_setting:
                description: Linux group owner added to the function's process.
                type: dict
                suboptions:
                  auto_add_group_owner:
                    description: Add the directory's group owner to the process.
                    type: bool
                  group_owner:
                    description: Name of a Linux group to add instead.
                    type: str
          s3_machine_learning_model_resource_data:
            description: A model archive in S3 that the core downloads and unpacks.
            type: dict
            suboptions:
              s3_uri:
                description: C(s3://<bucket>/<key>) of the model archive.
                type: str
                required: true
              destination_path:
                description: Absolute path where the function finds the model.
                type: str
                required: true
              owner_setting: &model_owner_setting
                description: Owner of the downloaded files.
                type: dict
                suboptions:
                  group_owner:
                    description: Linux group owning the files.
                    type: str
                    required: true
                  group_permission:
                    description: That group's permission.
                    type: str
                    choices: [ro, rw]
                    required: true
          sage_maker_machine_learning_model_resource_data:
            description: The model of a SageMaker training job.
            type: dict
            suboptions:
              sage_maker_job_arn:
                description: ARN of the training job.
                type: str
                required: true
              destination_path:
                description: Absolute path where the function finds the model.
                type: str
                required: true
              # The same owner setting as the S3 model's (a YAML alias).
              owner_setting: *model_owner_setting
  subscriptions:
    description:
      - MQTT routes of the group (C(CreateSubscriptionDefinitionVersion) C(Subscriptions)). Omitted or empty means none.
    type: list
    elements: dict
    suboptions:
      id:
        description: Id in the definition; defaults to one derived from source, subject and target.
        type: str
      source:
        description: C(cloud), C(GGShadowService), a Lambda ARN listed in O(functions) or an IoT thing ARN.
        type: str
        required: true
      subject:
        description: MQTT topic or topic filter.
        type: str
        required: true
      target:
        description: C(cloud), C(GGShadowService), a Lambda ARN listed in O(functions) or an IoT thing ARN.
        type: str
        required: true
  loggers:
    description:
      - Logging of the core (C(CreateLoggerDefinitionVersion) C(Loggers)). Omitted or empty means none.
    type: list
    elements: dict
    suboptions:
      id:
        description: Id in the definition; defaults to C(<component>-<type>).
        type: str
      component:
        description: What is logged.
        type: str
        choices: [GreengrassSystem, Lambda]
        required: true
      level:
        description: Lowest level logged.
        type: str
        choices: [DEBUG, INFO, WARN, ERROR, FATAL]
        required: true
      type:
        description: Where logs go.
        type: str
        choices: [FileSystem, AWSCloudWatch]
        required: true
      space:
        description: Local space in KB (O(loggers[].type=FileSystem) only).
        type: int
  role_arn:
    description:
      - IAM role the group's Lambda functions assume in the cloud. Associated when it differs from the
        group's current role; left as it is when omitted.
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - Check mode reports what would change without any write call; ARNs of versions that would be created are
    returned as null.
  - Greengrass V1 C(ResetDeployments) is used on O(state=absent) for a group that was deployed, because AWS
    refuses to delete a deployed group.
"""

EXAMPLES = r"""
- name: Greengrass group for the object detector
  edgeml.greengrass.greengrass_v1_group:
    name: detector-site-a
    core:
      thing_arn: "{{ core_identity.thing.arn }}"
      certificate_arn: "{{ core_identity.certificate.arn }}"
    role_arn: arn:aws:iam::123456789012:role/greengrass-detector
    resources:
      - name: ssd-model
        resource_data_container:
          s3_machine_learning_model_resource_data:
            s3_uri: s3://detector-models/ssd_512_resnet50.tar.gz
            destination_path: /greengrass-ml/model
      - name: webcam
        resource_data_container:
          local_device_resource_data:
            source_path: /dev/video0
            group_owner_setting:
              auto_add_group_owner: true
    default_config:
      execution:
        isolation_mode: GreengrassContainer
    functions:
      - function_arn: arn:aws:lambda:us-east-1:123456789012:function:detector:live
        pinned: true
        memory_size: 1048576
        timeout: 30
        environment:
          variables:
            MODEL_PATH: /greengrass-ml/model
          resource_access_policies:
            - resource_id: ssd-model
              permission: ro
            - resource_id: webcam
              permission: rw
    subscriptions:
      - source: arn:aws:lambda:us-east-1:123456789012:function:detector:live
        subject: detections/site-a
        target: cloud
  register: detector_group

- name: Remove the group and its definitions
  edgeml.greengrass.greengrass_v1_group:
    name: detector-site-a
    state: absent
"""

RETURN = r"""
group:
  description:
    - The group (empty after O(state=absent)).
    - Version fields are null in check mode when a version would be created.
  returned: always
  type: dict
  contains:
    id:
      description: Group id.
      type: str
      sample: 4ad0c4b8-3b4e-4a06-a84a-bd6a0e3b2b1a
    arn:
      description: Group ARN.
      type: str
    name:
      description: Group name.
      type: str
    latest_version:
      description: Id of the group's latest version.
      type: str
    latest_version_arn:
      description: ARN of the group's latest version.
      type: str
definition_versions:
  description:
    - Definition version ARN the group's latest version uses, per kind (core, function, resource, subscription, logger).
  returned: when O(state=present)
  type: dict
  sample:
    core: arn:aws:greengrass:us-east-1:123456789012:greengrass/definition/cores/1f.../versions/2a...
definition_actions:
  description: Per kind, what this run did or would do; V(keep), V(new_version), V(create) or V(unused).
  returned: when O(state=present)
  type: dict
  sample: {core: keep, function: keep, resource: keep, subscription: new_version}
adopted_definitions:
  description:
    - Per kind, the id of a definition named after the group that no version of it used and that this run took
      instead of creating one (left by a run interrupted before its group version, or by a retried create).
  returned: when O(state=present)
  type: dict
  sample: {core: 4f3e2a1b-0000-4000-8000-000000000001}
deleted_orphan_definitions:
  description:
    - Other unused definitions named after the group, deleted (or, in check mode, to be deleted) by this run.
  returned: when O(state=present)
  type: list
  elements: dict
  sample: [{kind: core, id: 4f3e2a1b-0000-4000-8000-000000000002, name: edge-01-group-core}]
deleted_duplicate_groups:
  description:
    - Ids of the other groups with this name that the run deleted right after creating the group, because they hold
      exactly its first version and were never deployed (made by a CreateGroup retried after its answer was lost),
      or, when the run found several groups of that name, those that hold exactly the kept group's latest version
      and were never deployed (the deployed one is kept, else the oldest).
  returned: when O(state=present)
  type: list
  elements: str
  sample: [9c1f2d3e-0000-4000-8000-000000000003]
role_arn:
  description: The group role after the run (null when none).
  returned: when O(state=present)
  type: str
deleted:
  description: What O(state=absent) deleted or would delete.
  returned: when O(state=absent)
  type: dict
  contains:
    group_id:
      description: Id of the deleted group.
      type: str
    duplicate_group_ids:
      description:
        - Ids of the other groups with this name, never deployed and holding exactly the group's latest version
          (made by a CreateGroup retried after its answer was lost), deleted with it.
      type: list
      elements: str
    definitions:
      description:
        - Deleted definitions as C({kind, id, name}) - those the group's versions used, and those named after the
          group that none used (left by an interrupted run), also when the group itself does not exist.
      type: list
      elements: dict
    deployments_reset:
      description: Whether the group's deployments were reset first.
      type: bool
"""


from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v1 as gg  # noqa: E402

GROUP_OWNER_SETTING = dict(
    type="dict",
    options=dict(auto_add_group_owner=dict(type="bool"), group_owner=dict(type="str")),
)
OWNER_SETTING = dict(
    type="dict",
    options=dict(
        group_owner=dict(type="str", required=True),
        group_permission=dict(type="str", choices=["ro", "rw"], required=True),
    ),
)
EXECUTION = dict(
    type="dict",
    options=dict(
        isolation_mode=dict(type="str", choices=["GreengrassContainer", "NoContainer"]),
        run_as=dict(type="dict", options=dict(uid=dict(type="int"), gid=dict(type="int"))),
    ),
)
RESOURCE_KINDS = [
    "local_device_resource_data",
    "local_volume_resource_data",
    "s3_machine_learning_model_resource_data",
    "sage_maker_machine_learning_model_resource_data",
]

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    core=dict(
        type="dict",
        options=dict(
            thing_arn=dict(type="str", required=True),
            certificate_arn=dict(type="str", required=True),
            sync_shadow=dict(type="bool", default=True),
            id=dict(type="str"),
        ),
    ),
    functions=dict(
        type="list",
        elements="dict",
        options=dict(
            function_arn=dict(type="str", required=True),
            id=dict(type="str"),
            pinned=dict(type="bool"),
            memory_size=dict(type="int"),
            timeout=dict(type="int"),
            encoding_type=dict(type="str", choices=["json", "binary"]),
            executable=dict(type="str"),
            exec_args=dict(type="str"),
            environment=dict(
                type="dict",
                options=dict(
                    variables=dict(type="dict"),
                    access_sysfs=dict(type="bool"),
                    resource_access_policies=dict(
                        type="list",
                        elements="dict",
                        options=dict(
                            resource_id=dict(type="str", required=True),
                            permission=dict(type="str", choices=["ro", "rw"], default="ro"),
                        ),
                    ),
                    execution=EXECUTION,
                ),
            ),
        ),
    ),
    default_config=dict(type="dict", options=dict(execution=EXECUTION)),
    resources=dict(
        type="list",
        elements="dict",
        options=dict(
            name=dict(type="str", required=True),
            id=dict(type="str"),
            resource_data_container=dict(
                type="dict",
                required=True,
                mutually_exclusive=[RESOURCE_KINDS],
                required_one_of=[RESOURCE_KINDS],
                options=dict(
                    local_device_resource_data=dict(
                        type="dict",
                        options=dict(
                            source_path=dict(type="str", required=True), group_owner_setting=GROUP_OWNER_SETTING
                        ),
                    ),
                    local_volume_resource_data=dict(
                        type="dict",
                        options=dict(
                            source_path=dict(type="str", required=True),
                            destination_path=dict(type="str", required=True),
                            group_owner_setting=GROUP_OWNER_SETTING,
                        ),
                    ),
                    s3_machine_learning_model_resource_data=dict(
                        type="dict",
                        options=dict(
                            s3_uri=dict(type="str", required=True),
                            destination_path=dict(type="str", required=True),
                            owner_setting=OWNER_SETTING,
                        ),
                    ),
                    sage_maker_machine_learning_model_resource_data=dict(
                        type="dict",
                        options=dict(
                            sage_maker_job_arn=dict(type="str", required=True),
                            destination_path=dict(type="str", required=True),
                            owner_setting=OWNER_SETTING,
                        ),
                    ),
                ),
            ),
        ),
    ),
    subscriptions=dict(
        type="list",
        elements="dict",
        options=dict(
            id=dict(type="str"),
            source=dict(type="str", required=True),
            subject=dict(type="str", required=True),
            target=dict(type="str", required=True),
        ),
    ),
    loggers=dict(
        type="list",
        elements="dict",
        options=dict(
            id=dict(type="str"),
            component=dict(type="str", choices=["GreengrassSystem", "Lambda"], required=True),
            level=dict(type="str", choices=["DEBUG", "INFO", "WARN", "ERROR", "FATAL"], required=True),
            type=dict(type="str", choices=["FileSystem", "AWSCloudWatch"], required=True),
            space=dict(type="int"),
        ),
    ),
    role_arn=dict(type="str"),
)


class GroupRun:
    """One run of the module: read what exists, plan, and (unless check mode) write only the differences."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.name = module.params["name"]
        self.created_definitions = []  # (kind, id) made by this run, deleted again if the run fails
        self.created_group_id = None

    def fail(self, message, error=None):
        self._undo()
        if error is not None:
            fail_aws_call(self.module, error, message)
        self.module.fail_json(msg=message)

    def _undo(self):
        """Leave nothing half-made: remove what this run created before failing."""
        if self.created_group_id:
            try:
                gg.delete_group(self.client, self.created_group_id)
            except AWSCallError:
                pass  # the original error is the one to report
        for kind, definition_id in self.created_definitions:
            try:
                gg.delete_definition(self.client, kind, definition_id)
            except AWSCallError:
                pass  # the original error is the one to report
        self.created_definitions = []
        self.created_group_id = None

    # -- present

    def present(self):
        desired = gg.desired_definitions(self.params)
        group, duplicate_groups = gg.group_and_lost_create_duplicates(self.client, self.name)
        current_definition = gg.current_group_definition(self.client, group)

        owned = {}
        for kind in gg.KIND_ORDER:
            arn = current_definition.get(gg.KINDS[kind]["group_key"])
            if arn:
                owned[kind] = gg.owned_definition(self.client, kind, self.name, arn)
        before_definitions = dict((kind, owned[kind]["content"]) for kind in owned if owned[kind])
        adopted, orphans = self._adopt_unclaimed(group, desired, owned)

        actions = {}
        arns = {}
        for kind in gg.KIND_ORDER:
            action = gg.plan_definition(kind, desired.get(kind), owned.get(kind))
            actions[kind] = action
            if action == "keep":
                arns[kind] = owned[kind]["latest_version_arn"]
            elif action == "unused" or self.module.check_mode:
                arns[kind] = None
            elif action == "new_version":
                arns[kind] = gg.create_definition_version(self.client, kind, owned[kind]["id"], desired[kind])["Arn"]
            else:
                created = gg.create_definition(self.client, kind, gg.definition_name(self.name, kind), desired[kind])
                self.created_definitions.append((kind, created["Id"]))
                arns[kind] = created["LatestVersionArn"]

        wanted_definition = gg.desired_group_definition(current_definition, arns)
        needs_group_version = group is None or any(a in ("create", "new_version") for a in actions.values())
        needs_group_version = needs_group_version or wanted_definition != current_definition

        if group is None:
            group = {"Name": self.name}
            if not self.module.check_mode:
                group = gg.create_group(self.client, self.name, wanted_definition)
                self.created_group_id = group["Id"]
                duplicate_groups = gg.duplicates_of_created_group(self.client, group, wanted_definition)
        elif needs_group_version:
            if self.module.check_mode:
                group = dict(group, LatestVersion=None, LatestVersionArn=None)
            else:
                version = gg.create_group_version(self.client, group["Id"], wanted_definition)
                group = dict(group, LatestVersion=version["Version"], LatestVersionArn=version["Arn"])

        role_arn, role_changed = self._role(group)
        if self.created_definitions:
            orphans = self._with_lost_create_duplicates(group, orphans)
        # The run succeeded: what it created now belongs to the group.
        self.created_definitions = []
        self.created_group_id = None
        if not self.module.check_mode:
            for duplicate in duplicate_groups:
                gg.delete_group(self.client, duplicate["Id"])
            for orphan in orphans:
                gg.delete_definition(self.client, orphan["kind"], orphan["id"])

        before = {
            "definitions": dict(
                (kind, gg.normalize_definition(kind, content)) for kind, content in before_definitions.items()
            ),
            "role_arn": self._current_role,
        }
        after = {
            "definitions": dict((kind, gg.normalize_definition(kind, desired[kind])) for kind in desired),
            "role_arn": role_arn,
        }
        return dict(
            changed=needs_group_version or role_changed or bool(orphans) or bool(duplicate_groups),
            group=gg.group_summary(group),
            definition_versions=dict((kind, arns[kind]) for kind in gg.KIND_ORDER if desired.get(kind)),
            definition_actions=actions,
            adopted_definitions=adopted,
            deleted_orphan_definitions=orphans,
            deleted_duplicate_groups=sorted(duplicate["Id"] for duplicate in duplicate_groups),
            role_arn=role_arn,
            diff={"before": before, "after": after},
        )

    def _adopt_unclaimed(self, group, desired, owned):
        """For each kind the group needs but its current version does not hold one of its own: the newest
        definition named after the group that no version of it uses is taken (``owned[kind]`` is set to it, so it
        is kept or given a new version, never made again); the other unclaimed ones are returned for deletion.
        A run killed after creating definitions and before the group (version) that uses them leaves these."""
        missing = [kind for kind in gg.KIND_ORDER if desired.get(kind) is not None and not owned.get(kind)]
        if not missing:
            return {}, []
        claimed = set()
        if group is not None:
            claimed = set(d["id"] for d in self._owned_definitions_of_every_version(group))
        adopted, orphans = {}, []
        for kind in missing:
            unclaimed = [d for d in gg.unclaimed_definitions(self.client, kind, self.name, claimed) if d]
            if unclaimed:
                owned[kind] = unclaimed[0]
                adopted[kind] = unclaimed[0]["id"]
                orphans.extend({"kind": kind, "id": d["id"], "name": d["name"]} for d in unclaimed[1:])
        return adopted, orphans

    def _with_lost_create_duplicates(self, group, orphans):
        """``orphans`` plus the definitions named after the group that no version of it uses, of each kind this
        run created: a create retried after its answer was lost leaves a second one (Greengrass V1 documents no
        idempotency for Create*Definition; see gg.duplicates_of_created_group). Read only when this run created
        definitions, so that a run that changes nothing makes no extra calls."""
        claimed = set(d["id"] for d in self._owned_definitions_of_every_version(group))
        known = set(orphan["id"] for orphan in orphans)
        for kind in sorted(set(kind for kind, _id in self.created_definitions)):
            for definition in gg.unclaimed_definitions(self.client, kind, self.name, claimed):
                if definition and definition["id"] not in known:
                    orphans = orphans + [{"kind": kind, "id": definition["id"], "name": definition["name"]}]
        return orphans

    def _role(self, group):
        wanted = self.params.get("role_arn")
        # A group made by this run (or only predicted in check mode) has no role yet.
        known_new = self.created_group_id is not None or not group.get("Id")
        self._current_role = None if known_new else gg.get_associated_role_arn(self.client, group["Id"])
        if wanted is None or wanted == self._current_role:
            return self._current_role, False
        if not self.module.check_mode:
            gg.associate_role(self.client, group["Id"], wanted)
        return wanted, True

    # -- absent

    def absent(self):
        group, duplicate_groups = gg.group_and_lost_create_duplicates(self.client, self.name)
        definitions = self._owned_definitions_of_every_version(group) if group else []
        # Definitions named after the group that no version of it uses (an interrupted run's) go with it.
        claimed = set(d["id"] for d in definitions)
        for kind in gg.KIND_ORDER:
            definitions.extend(
                {"kind": kind, "id": d["id"], "name": d["name"]}
                for d in gg.unclaimed_definitions(self.client, kind, self.name, claimed)
                if d
            )
        if group is None:
            if not self.module.check_mode:
                for definition in definitions:
                    gg.delete_definition(self.client, definition["kind"], definition["id"])
            return dict(
                changed=bool(definitions),
                group={},
                deleted={"definitions": definitions} if definitions else {},
                diff={"before": {"definitions": definitions} if definitions else {}, "after": {}},
            )

        deployments = gg.sort_deployments(gg.list_deployments(self.client, group["Id"]))
        needs_reset = bool(deployments) and deployments[0].get("DeploymentType") not in (
            "ResetDeployment",
            "ForceResetDeployment",
        )
        role_arn = gg.get_associated_role_arn(self.client, group["Id"])
        if not self.module.check_mode:
            if needs_reset:
                gg.reset_deployments(self.client, group["Id"], force=True)
            if role_arn:
                gg.disassociate_role(self.client, group["Id"])
            for duplicate in duplicate_groups:
                gg.delete_group(self.client, duplicate["Id"])
            gg.delete_group(self.client, group["Id"])
            for definition in definitions:
                gg.delete_definition(self.client, definition["kind"], definition["id"])
        return dict(
            changed=True,
            group={},
            deleted={
                "group_id": group["Id"],
                "duplicate_group_ids": sorted(duplicate["Id"] for duplicate in duplicate_groups),
                "definitions": definitions,
                "deployments_reset": needs_reset,
            },
            diff={
                "before": {"group": gg.group_summary(group), "definitions": definitions, "role_arn": role_arn},
                "after": {},
            },
        )

    def _owned_definitions_of_every_version(self, group):
        """Definitions named after the group that any of its versions used (a kind dropped earlier included)."""
        seen = {}
        for version in gg.list_group_versions(self.client, group["Id"]):
            definition = gg.get_group_version(self.client, group["Id"], version["Version"]).get("Definition", {}) or {}
            for kind in gg.KIND_ORDER:
                definition_id, _version = gg.definition_id_from_version_arn(definition.get(gg.KINDS[kind]["group_key"]))
                if definition_id and (kind, definition_id) not in seen:
                    found = gg.get_definition(self.client, kind, definition_id)
                    if found and found.get("Name") == gg.definition_name(self.name, kind):
                        seen[(kind, definition_id)] = {"kind": kind, "id": definition_id, "name": found["Name"]}
        return [seen[key] for key in sorted(seen)]


def main():
    module = AnsibleAWSModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "present", ["core"])],
        supports_check_mode=True,
    )
    try:
        gg.validate_group_params(module.params)
    except gg.GreengrassInputError as error:
        module.fail_json(msg="Invalid greengrass_v1_group input: %s" % error, problems=error.problems)

    run = GroupRun(module, module.client("greengrass"))
    try:
        result = run.present() if module.params["state"] == "present" else run.absent()
    except gg.GreengrassInputError as error:
        run.fail(str(error))
    except AWSCallError as error:
        run.fail("Greengrass V1 call failed for group %r" % module.params["name"], error)

    module.exit_json(**result)


if __name__ == "__main__":
    main()
