#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: greengrass_v2_deployment
short_description: Deploy AWS IoT Greengrass V2 components to a thing group, once
version_added: 0.2.0
description:
  - Makes sure the latest Greengrass V2 deployment of a thing group deploys the given components with the given
    configuration and policies (C(CreateDeployment)). A new deployment is made only when the group's latest
    deployment differs (components, versions, configuration updates, C(runWith), policies, IoT job settings, name)
    or was canceled; AWS then replaces the group's previous deployment with it.
  - With O(wait), polls each core device of the group (C(ListCoreDevices) by thing group, then
    C(ListEffectiveDeploymentsForCoreDevice)) until every device reports a final status for the deployment,
    and fails naming each device that did not succeed, with its reason and error stack. The devices' statuses
    are returned either way.
  - Every component version (except AWS-published C(aws.greengrass.*) ones) must exist and be C(DEPLOYABLE), and the
    thing group must exist; both are checked, with the other inputs, before anything is written.
  - O(state=absent) cancels the group's active deployment and deletes the group's deployments. Components already
    on the devices stay there (a core device keeps its last deployment); deploy a smaller set to remove components.
author:
  - edgeml.greengrass contributors (@edgeml)
options:
  thing_group:
    description: Name of the target thing group (M(edgeml.greengrass.iot_device_identity) puts devices in it).
    type: str
    required: true
  deployment_name:
    description: Name of the deployment. Defaults to the thing group's name.
    type: str
  components:
    description:
      - Components to deploy, by component name. Required with O(state=present).
      - Each value takes C(component_version) (required), C(configuration_update) with C(merge) (a dict or JSON
        object text merged into the component's configuration) and C(reset) (a list of JSON pointers reset to
        their defaults), and C(run_with) with C(posix_user) and C(system_resource_limits) (C(memory) in KB,
        C(cpus)).
    type: dict
  failure_handling_policy:
    description: What a core device does when the deployment fails on it; V(ROLLBACK) restores the previous
      components and configuration.
    type: str
    choices: [ROLLBACK, DO_NOTHING]
    default: ROLLBACK
  component_update_policy:
    description: How components are told about the update (AWS default C(NOTIFY_COMPONENTS), 60 seconds).
    type: dict
    suboptions:
      action:
        description: Whether components may defer the update.
        type: str
        choices: [NOTIFY_COMPONENTS, SKIP_NOTIFY_COMPONENTS]
      timeout_in_seconds:
        description: Seconds components have to get ready.
        type: int
  configuration_validation_policy:
    description: How long components may take to validate a configuration update (AWS default 30 seconds).
    type: dict
    suboptions:
      timeout_in_seconds:
        description: Seconds.
        type: int
  iot_job_configuration:
    description: Rollout, abort and timeout settings of the IoT job that carries the deployment.
    type: dict
    suboptions:
      job_executions_rollout_config:
        description: Rollout rate.
        type: dict
        suboptions:
          maximum_per_minute:
            description: Most devices notified per minute.
            type: int
          exponential_rate:
            description: An exponentially growing rollout.
            type: dict
            suboptions:
              base_rate_per_minute:
                description: Devices notified per minute at the start.
                type: int
                required: true
              increment_factor:
                description: Factor the rate grows by.
                type: float
                required: true
              rate_increase_criteria:
                description: When the rate grows.
                type: dict
                required: true
                suboptions:
                  number_of_notified_things:
                    description: After this many devices were notified.
                    type: int
                  number_of_succeeded_things:
                    description: After this many devices succeeded.
                    type: int
      abort_config:
        description: When to stop the rollout.
        type: dict
        suboptions:
          criteria_list:
            description: Abort criteria.
            type: list
            elements: dict
            required: true
            suboptions:
              failure_type:
                description: Which outcomes count.
                type: str
                choices: [FAILED, REJECTED, TIMED_OUT, ALL]
                required: true
              action:
                description: What to do.
                type: str
                choices: [CANCEL]
                default: CANCEL
              threshold_percentage:
                description: Percentage of executed devices that must fail.
                type: float
                required: true
              min_number_of_executed_things:
                description: Devices that must have run the job first.
                type: int
                required: true
      timeout_config:
        description: Time-out of each device's job execution.
        type: dict
        suboptions:
          in_progress_timeout_in_minutes:
            description: Minutes a device may stay C(IN_PROGRESS).
            type: int
  tags:
    description: Tags for a deployment this module creates.
    type: dict
  state:
    description: V(present) deploys; V(absent) cancels and deletes the group's deployments.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description: Wait until every core device in the group reports a final status for the deployment.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait before failing with the statuses seen.
    type: int
    default: 600
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - Supports check mode and diff mode.
  - Only core devices that have registered with Greengrass (a running nucleus) are waited on; a thing in the
    group without one is not a core device yet. With no core device in the group the module warns.
  - A device that failed keeps its status for that deployment; re-running without a change reports the failure
    again. Change the components or configuration to deploy again.
"""

EXAMPLES = r"""
- name: Deploy the detector to every device of the group, rolling back on failure
  edgeml.greengrass.greengrass_v2_deployment:
    thing_group: edge-detectors
    components:
      com.edgeml.Detector:
        component_version: "{{ detector_component.component.version }}"
        configuration_update:
          merge:
            threshold: 0.5
            topic: detections/site-a
      aws.greengrass.Nucleus:
        component_version: 2.12.0
    iot_job_configuration:
      job_executions_rollout_config:
        maximum_per_minute: 10
      abort_config:
        criteria_list:
          - failure_type: FAILED
            threshold_percentage: 20
            min_number_of_executed_things: 5
    wait_timeout: 900
  register: detector_deployment

- name: Stop deploying to the group
  edgeml.greengrass.greengrass_v2_deployment:
    thing_group: edge-detectors
    state: absent
"""

RETURN = r"""
deployment:
  description: The group's deployment this run made or found; in check mode a predicted one without id.
  returned: with O(state=present)
  type: dict
  contains:
    deployment_id:
      description: Deployment id.
      type: str
    deployment_name:
      description: Deployment name.
      type: str
    target_arn:
      description: Thing group ARN.
      type: str
    revision_id:
      description: Revision of the group's deployments.
      type: str
    status:
      description: C(ACTIVE), C(COMPLETED), C(CANCELED), C(FAILED) or C(INACTIVE).
      type: str
    components:
      description: Components as sent to AWS.
      type: dict
devices:
  description: Each core device of the group and its status for the deployment.
  returned: with O(state=present)
  type: list
  elements: dict
  contains:
    core_device:
      description: Thing name.
      type: str
    status:
      description: C(SUCCEEDED), C(FAILED), C(IN_PROGRESS), C(QUEUED), C(TIMED_OUT), C(CANCELED), C(REJECTED),
        C(COMPLETED), or null when the device has not received it.
      type: str
    reason:
      description: The device's reason.
      type: str
    error_stack:
      description: Error codes, outermost first.
      type: list
      elements: str
deleted:
  description: Deployment ids deleted (or that would be, in check mode).
  returned: with O(state=absent)
  type: list
  elements: str
"""

import time  # noqa: E402

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v2 as gg2  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot  # noqa: E402

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

POLL_SECONDS = 3


class DeploymentRun:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = module.client("greengrassv2")
        self.iot = module.client("iot")

    def group_arn(self, required):
        group = iot.describe_thing_group(self.iot, self.params["thing_group"])
        if not group and required:
            self.module.fail_json(
                msg="thing_group %r does not exist; create it first (edgeml.greengrass.iot_device_identity with "
                "thing_groups and create_thing_groups: true)" % self.params["thing_group"]
            )
        return (group or {}).get("thingGroupArn")

    def check_components(self, components):
        problems = []
        for name, spec in components.items():
            if name.startswith("aws.greengrass."):
                continue
            component = gg2.find_component(self.client, name)
            described = None
            if component:
                arn = "%s:versions:%s" % (component["arn"], spec["componentVersion"])
                described = gg2.describe_component(self.client, arn)
            if not described:
                problems.append(
                    "components.%s: version %s does not exist (create it with "
                    "edgeml.greengrass.greengrass_v2_component)" % (name, spec["componentVersion"])
                )
            elif (described.get("status") or {}).get("componentState") != "DEPLOYABLE":
                problems.append(
                    "components.%s: version %s is %s, not DEPLOYABLE"
                    % (name, spec["componentVersion"], described["status"].get("componentState"))
                )
        if problems:
            self.module.fail_json(msg="Invalid greengrass_v2_deployment input: %s" % "; ".join(problems))

    def devices(self, group_arn, deployment_id):
        executions = gg2.device_executions(self.client, group_arn, deployment_id)
        return [executions[name] for name in sorted(executions)]

    def wait_for(self, group_arn, deployment_id):
        """(device views, timed_out)."""
        deadline = time.time() + self.params["wait_timeout"]
        while True:
            devices = self.devices(group_arn, deployment_id)
            if all(d["status"] in gg2.FINAL_EXECUTION_STATUSES for d in devices):
                return devices, False
            if time.time() >= deadline:
                return devices, True
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.time())))

    def present(self):
        group_arn = self.group_arn(required=True)
        params = dict(self.params, deployment_name=self.params["deployment_name"] or self.params["thing_group"])
        request = gg2.build_deployment_request(params, group_arn)
        self.check_components(request["components"])
        latest = gg2.latest_deployment(self.client, group_arn)
        changed = gg2.deployment_differs(request, latest)
        diff = {
            "before": gg2.comparable_deployment(latest) if latest else {},
            "after": gg2.comparable_deployment(request),
        }
        if changed and self.module.check_mode:
            predicted = dict(request, deploymentStatus="ACTIVE", isLatestForTarget=True)
            self.module.exit_json(changed=True, deployment=gg2.deployment_view(predicted), devices=[], diff=diff)
        if changed:
            if self.params["tags"]:
                request["tags"] = self.params["tags"]
            created = gg2.create_deployment(self.client, request)
            deployment = gg2.get_deployment(self.client, created["deploymentId"])
        else:
            deployment = latest
        view = gg2.deployment_view(deployment)
        result = dict(changed=changed, deployment=view, diff=diff)

        if self.params["wait"] and not self.module.check_mode:
            devices, timed_out = self.wait_for(group_arn, deployment["deploymentId"])
        else:
            devices, timed_out = self.devices(group_arn, deployment["deploymentId"]), False
        result["devices"] = devices
        if not devices:
            self.module.warn(
                "thing group %r has no Greengrass core device yet; the deployment reaches its devices when their "
                "nucleus registers" % self.params["thing_group"]
            )
        if not self.params["wait"] or self.module.check_mode:
            self.module.exit_json(**result)
        failed = [d for d in devices if d["status"] not in gg2.SUCCESS_EXECUTION_STATUSES]
        if not failed:
            self.module.exit_json(**result)
        details = "; ".join(
            "%s: %s%s%s"
            % (
                d["core_device"],
                d["status"] or "not received",
                " (%s)" % d["reason"] if d.get("reason") else "",
                " [%s]" % ", ".join(d["error_stack"]) if d.get("error_stack") else "",
            )
            for d in failed
        )
        if timed_out:
            message = "Deployment %s to thing group %r did not finish on every core device within %d seconds: %s" % (
                deployment["deploymentId"],
                self.params["thing_group"],
                self.params["wait_timeout"],
                details,
            )
        else:
            message = "Deployment %s to thing group %r failed on %d of %d core devices (failure handling: %s): %s" % (
                deployment["deploymentId"],
                self.params["thing_group"],
                len(failed),
                len(devices),
                self.params["failure_handling_policy"],
                details,
            )
        self.module.fail_json(msg=message, **result)

    def absent(self):
        group_arn = self.group_arn(required=False)
        deployments = gg2.list_deployments(self.client, group_arn, "ALL") if group_arn else []
        doomed = [d["deploymentId"] for d in deployments]
        if not doomed or self.module.check_mode:
            self.module.exit_json(changed=bool(doomed), deleted=doomed)
        for deployment in deployments:
            if deployment.get("deploymentStatus") == "ACTIVE":
                gg2.cancel_deployment(self.client, deployment["deploymentId"])
            gg2.delete_deployment(self.client, deployment["deploymentId"])
        self.module.exit_json(changed=True, deleted=doomed)


def validate(module):
    params = module.params
    problems = []
    if not gg2.THING_GROUP_NAME_RE.match(params["thing_group"] or ""):
        problems.append("thing_group must be 1-128 characters from [a-zA-Z0-9:_-], got %r" % (params["thing_group"],))
    if params["wait_timeout"] < 0:
        problems.append("wait_timeout must be 0 or more seconds, got %d" % params["wait_timeout"])
    if params["deployment_name"] is not None and not params["deployment_name"].strip():
        problems.append("deployment_name must not be empty")
    if params["state"] == "present":
        if not params["components"]:
            problems.append("components is required with state: present")
        else:
            try:
                gg2.build_components(params["components"])
            except gg2.GreengrassV2InputError as error:
                problems.extend(error.problems)
    for criteria in ((params["iot_job_configuration"] or {}).get("abort_config") or {}).get("criteria_list") or []:
        if not 0 <= criteria["threshold_percentage"] <= 100:
            problems.append(
                "iot_job_configuration.abort_config.criteria_list: threshold_percentage must be 0-100, got %s"
                % criteria["threshold_percentage"]
            )
    if problems:
        module.fail_json(msg="Invalid greengrass_v2_deployment input: %s" % "; ".join(problems))


def main():
    rate_increase = dict(
        number_of_notified_things=dict(type="int"),
        number_of_succeeded_things=dict(type="int"),
    )
    exponential_rate = dict(
        base_rate_per_minute=dict(type="int", required=True),
        increment_factor=dict(type="float", required=True),
        rate_increase_criteria=dict(type="dict", required=True, options=rate_increase),
    )
    abort_criteria = dict(
        failure_type=dict(type="str", required=True, choices=["FAILED", "REJECTED", "TIMED_OUT", "ALL"]),
        action=dict(type="str", choices=["CANCEL"], default="CANCEL"),
        threshold_percentage=dict(type="float", required=True),
        min_number_of_executed_things=dict(type="int", required=True),
    )
    job_configuration = dict(
        job_executions_rollout_config=dict(
            type="dict",
            options=dict(
                maximum_per_minute=dict(type="int"),
                exponential_rate=dict(type="dict", options=exponential_rate),
            ),
        ),
        abort_config=dict(
            type="dict",
            options=dict(criteria_list=dict(type="list", elements="dict", required=True, options=abort_criteria)),
        ),
        timeout_config=dict(type="dict", options=dict(in_progress_timeout_in_minutes=dict(type="int"))),
    )
    module = AnsibleAWSModule(
        argument_spec=dict(
            thing_group=dict(type="str", required=True),
            deployment_name=dict(type="str"),
            components=dict(type="dict"),
            failure_handling_policy=dict(type="str", choices=["ROLLBACK", "DO_NOTHING"], default="ROLLBACK"),
            component_update_policy=dict(
                type="dict",
                options=dict(
                    action=dict(type="str", choices=["NOTIFY_COMPONENTS", "SKIP_NOTIFY_COMPONENTS"]),
                    timeout_in_seconds=dict(type="int"),
                ),
            ),
            configuration_validation_policy=dict(type="dict", options=dict(timeout_in_seconds=dict(type="int"))),
            iot_job_configuration=dict(type="dict", options=job_configuration),
            tags=dict(type="dict"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=600),
        ),
        supports_check_mode=True,
    )
    validate(module)
    run = DeploymentRun(module)
    try:
        if module.params["state"] == "present":
            run.present()
        else:
            run.absent()
    except gg2.GreengrassV2InputError as error:
        module.fail_json(msg="Invalid greengrass_v2_deployment input: %s" % error)
    except iot.AnsibleIoTError as error:
        module.fail_json_aws_error(error)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        module.fail_json_aws(
            error, msg="Greengrass V2 deployment call failed for thing group %r" % module.params["thing_group"]
        )


if __name__ == "__main__":
    main()
