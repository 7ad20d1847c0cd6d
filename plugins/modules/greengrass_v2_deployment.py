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
  - A new deployment replaces the group's previous one as a whole, and a core device uninstalls every component
    the new one leaves out. So the components of the group's latest deployment that this module did not put there
    (another team's application, a log manager, the CLI) are carried into the new deployment unchanged by default
    (O(other_components=keep)); the ones it put there and that are no longer in O(components) are removed. Which
    components it put there is recorded in the deployment's tags (C(edgeml:component:N)).
  - With O(wait), polls each core device of the group (C(ListCoreDevices) by thing group, then
    C(ListEffectiveDeploymentsForCoreDevice)) until every device reports a final status for the deployment,
    and fails naming each device that did not succeed, with its reason and error stack. The devices' statuses
    are returned either way.
  - Every component version (except AWS-published C(aws.greengrass.*) ones) must exist and be C(DEPLOYABLE), and the
    thing group must exist; both are checked, with the other inputs, before anything is written.
  - O(state=absent) removes what this module deployed. When the group's latest deployment also carries other
    components (and O(other_components=keep)), it makes a deployment of those others only, so the devices uninstall
    this module's components and keep the others. Otherwise it cancels the group's active deployment and deletes
    the group's deployments; components already on the devices then stay there (a core device keeps its last
    deployment).
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
  other_components:
    description:
      - What happens to the components of the group's latest deployment that this module did not deploy there
        and that are not in O(components).
      - V(keep) carries them into the new deployment with their version, configuration update and C(runWith).
      - V(replace) leaves them out, so the devices uninstall them; the module then fails, before writing
        anything, naming each one that O(remove_components) does not list, so nothing is removed unseen.
      - Deployments made before this module recorded what it deployed carry no such tags; their components count
        as others'. Name the ones to drop in O(remove_components) once.
    type: str
    choices: [keep, replace]
    default: keep
  remove_components:
    description:
      - Components to leave out of the new deployment although this module did not deploy them (see
        O(other_components)). A name that is not in the group's latest deployment is ignored, so a second run
        changes nothing. Must not be in O(components).
    type: list
    elements: str
    default: []
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
    description: Tags for a deployment this module creates, besides the C(edgeml:component:N) tags that record
      which components it deployed (keys with that prefix are refused here).
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

- name: Deploy a new detector version and drop the CLI that someone deployed to the group by hand
  edgeml.greengrass.greengrass_v2_deployment:
    thing_group: edge-detectors
    components:
      com.edgeml.Detector:
        component_version: 1.3.0
    remove_components: [aws.greengrass.Cli]

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
kept_components:
  description: Components of the group's latest deployment that this module did not deploy and carried into the
    new deployment (O(other_components=keep)).
  returned: always
  type: list
  elements: str
removed_components:
  description: Components of the group's latest deployment that the new deployment leaves out, so the devices
    uninstall them (or would, in check mode).
  returned: always
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
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v2 as gg2  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot  # noqa: E402

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

    def check_components(self, components, kept):
        problems = []
        for name, spec in components.items():
            if name.startswith("aws.greengrass."):
                continue
            label = "components.%s" % name
            if name in kept:
                label = "component %s (kept from the group's latest deployment; drop it with remove_components)" % name
            component = gg2.find_component(self.client, name)
            described = None
            if component:
                arn = "%s:versions:%s" % (component["arn"], spec["componentVersion"])
                described = gg2.describe_component(self.client, arn)
            if not described:
                problems.append(
                    "%s: version %s does not exist (create it with "
                    "edgeml.greengrass.greengrass_v2_component)" % (label, spec["componentVersion"])
                )
            elif (described.get("status") or {}).get("componentState") != "DEPLOYABLE":
                problems.append(
                    "%s: version %s is %s, not DEPLOYABLE"
                    % (label, spec["componentVersion"], described["status"].get("componentState"))
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

    def plan_components(self, group_arn, desired, latest):
        owned = gg2.owned_components(gg2.ownership_deployment(self.client, group_arn, latest))
        plan = gg2.ComponentsPlan(
            desired, latest, owned, self.params["other_components"], self.params["remove_components"]
        )
        if plan.refused:
            self.module.fail_json(
                msg="other_components: replace would uninstall from thing group %r components that this module did "
                "not deploy there: %s (in its latest deployment %s); list them in remove_components to remove them, "
                "or keep them with other_components: keep"
                % (self.params["thing_group"], ", ".join(plan.unlisted), latest.get("deploymentId")),
                kept_components=[],
                removed_components=plan.removed,
            )
        return plan

    def present(self):
        group_arn = self.group_arn(required=True)
        params = dict(self.params, deployment_name=self.params["deployment_name"] or self.params["thing_group"])
        request = gg2.build_deployment_request(params, group_arn)
        latest = gg2.latest_deployment(self.client, group_arn)
        plan = self.plan_components(group_arn, request["components"], latest)
        asked = sorted(request["components"])
        request["components"] = plan.components
        self.check_components(request["components"], plan.kept)
        changed = gg2.deployment_differs(request, latest)
        diff = {
            "before": gg2.comparable_deployment(latest) if latest else {},
            "after": gg2.comparable_deployment(request),
        }
        components = dict(kept_components=sorted(plan.kept), removed_components=plan.removed)
        if changed and self.module.check_mode:
            predicted = dict(request, deploymentStatus="ACTIVE", isLatestForTarget=True)
            return dict(changed=True, deployment=gg2.deployment_view(predicted), devices=[], diff=diff, **components)
        if changed:
            request["tags"] = dict(self.params["tags"] or {}, **gg2.ownership_tags(asked))
            created = gg2.create_deployment(self.client, request)
            deployment = gg2.get_deployment(self.client, created["deploymentId"])
        else:
            deployment = latest
        view = gg2.deployment_view(deployment)
        result = dict(changed=changed, deployment=view, diff=diff, **components)

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
            return result
        failed = [d for d in devices if d["status"] not in gg2.SUCCESS_EXECUTION_STATUSES]
        if not failed:
            return result
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
        latest = gg2.latest_deployment(self.client, group_arn) if group_arn else None
        plan = self.plan_components(group_arn, {}, latest)
        # A canceled latest deployment is not brought back for the others' sake: the devices keep what they have.
        if plan.kept and latest.get("deploymentStatus") != "CANCELED":
            return self.keep_only_others(latest, plan)
        deployments = gg2.list_deployments(self.client, group_arn, "ALL") if group_arn else []
        doomed = [d["deploymentId"] for d in deployments]
        result = dict(changed=bool(doomed), deleted=doomed, kept_components=[], removed_components=plan.removed)
        if not doomed or self.module.check_mode:
            return result
        for deployment in deployments:
            if deployment.get("deploymentStatus") == "ACTIVE":
                gg2.cancel_deployment(self.client, deployment["deploymentId"])
            gg2.delete_deployment(self.client, deployment["deploymentId"])
        return result

    def keep_only_others(self, latest, plan):
        """state=absent when the group's latest deployment also carries others' components: a deployment of those
        only (same name, policies and job settings), so the devices uninstall ours and keep theirs; no deployment
        is deleted, since one of them is still someone else's."""
        result = dict(changed=bool(plan.removed), deleted=[], kept_components=sorted(plan.kept))
        result["removed_components"] = plan.removed
        if not plan.removed:
            return dict(deployment=gg2.deployment_view(latest), **result)
        request = dict(
            (key, latest[key])
            for key in ("targetArn", "deploymentName", "deploymentPolicies", "iotJobConfiguration")
            if latest.get(key)
        )
        request["components"] = plan.components
        tags = dict((k, v) for k, v in (latest.get("tags") or {}).items() if not k.startswith(gg2.OWNED_TAG_PREFIX))
        if tags:
            request["tags"] = tags
        if self.module.check_mode:
            predicted = dict(request, deploymentStatus="ACTIVE", isLatestForTarget=True)
            return dict(deployment=gg2.deployment_view(predicted), **result)
        created = gg2.create_deployment(self.client, request)
        return dict(deployment=gg2.deployment_view(gg2.get_deployment(self.client, created["deploymentId"])), **result)


def validate(module):
    params = module.params
    problems = []
    if not gg2.THING_GROUP_NAME_RE.match(params["thing_group"] or ""):
        problems.append("thing_group must be 1-128 characters from [a-zA-Z0-9:_-], got %r" % (params["thing_group"],))
    if params["wait_timeout"] < 0:
        problems.append("wait_timeout must be 0 or more seconds, got %d" % params["wait_timeout"])
    if params["deployment_name"] is not None and not params["deployment_name"].strip():
        problems.append("deployment_name must not be empty")
    for name in params["remove_components"]:
        if not gg2.COMPONENT_NAME_RE.match(name or ""):
            problems.append(
                "remove_components: %r is not a component name (1-128 characters from [A-Za-z0-9._-])" % name
            )
        elif name in (params["components"] or {}):
            problems.append(
                "remove_components: %s is also in components; a component is either deployed or removed" % name
            )
    reserved = sorted(key for key in (params["tags"] or {}) if key.startswith(gg2.OWNED_TAG_PREFIX))
    if reserved:
        problems.append(
            "tags: %s: keys starting with %r are the module's record of the components it deployed"
            % (", ".join(reserved), gg2.OWNED_TAG_PREFIX)
        )
    elif len(params["tags"] or {}) + len(params["components"] or {}) > gg2.MAX_DEPLOYMENT_TAGS:
        problems.append(
            "tags: a deployment takes %d tags, and one per component is the module's; got %d tags and %d components"
            % (gg2.MAX_DEPLOYMENT_TAGS, len(params["tags"] or {}), len(params["components"] or {}))
        )
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
            other_components=dict(type="str", choices=["keep", "replace"], default="keep"),
            remove_components=dict(type="list", elements="str", default=[]),
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
        result = run.present() if module.params["state"] == "present" else run.absent()
    except gg2.GreengrassV2InputError as error:
        module.fail_json(msg="Invalid greengrass_v2_deployment input: %s" % error)
    except AWSCallError as error:
        fail_aws_call(
            module, error, "Greengrass V2 deployment call failed for thing group %r" % module.params["thing_group"]
        )

    module.exit_json(**result)


if __name__ == "__main__":
    main()
