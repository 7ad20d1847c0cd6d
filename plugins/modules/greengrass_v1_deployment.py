#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: greengrass_v1_deployment
short_description: Deploy an AWS IoT Greengrass V1 group version to its core, once
version_added: 0.1.0
description:
  - Deploys the latest version of a Greengrass V1 group (or O(group_version_id)) to the group's core,
    replacing C(greengo deploy).
  - Makes no new deployment when the group's newest deployment is of that version and succeeded; when it is
    of that version and still C(InProgress) or C(Building), waits on it instead of stacking another.
    A newest deployment of that version that failed is retried.
  - With O(wait), polls C(GetDeploymentStatus) until C(Success) or C(Failure) and fails with the service's
    C(ErrorMessage) and C(ErrorDetails) on failure. With O(rollback_on_failure), a failed deployment is
    followed by a deployment of the most recent version that had deployed successfully (the module still fails,
    reporting both).
  - O(state=reset) resets the group's deployments (C(ResetDeployments)), for example before deleting a group.
author:
  - edgeml.greengrass contributors (@edgeml)
options:
  group_name:
    description: Name of the group. The module fails when several groups share it.
    type: str
  group_id:
    description: Id of the group.
    type: str
  group_version_id:
    description: Group version to deploy; defaults to the group's latest version.
    type: str
  state:
    description:
      - V(present) makes sure the version is deployed; V(reset) resets the group's deployments.
    type: str
    choices: [present, reset]
    default: present
  force_reset:
    description:
      - With O(state=reset), reset even when the core cannot be reached (C(ForceResetDeployment)).
    type: bool
    default: false
  wait:
    description: Wait until the deployment succeeds or fails.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait before failing with the last status seen.
    type: int
    default: 300
  rollback_on_failure:
    description:
      - When the deployment fails, deploy the most recent version that deployed successfully before it and
        wait for it. Needs O(wait).
    type: bool
    default: false
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - The core reports a deployment's outcome. On the local test endpoint (moto) nothing plays the core, and
    a deployment stays C(InProgress) unless the test bed is told what the device reports.
  - C(Redeployment) is not offered; a failed deployment of the same version is retried as a new deployment.
"""

EXAMPLES = r"""
- name: Deploy the detector group and wait for the core to report
  edgeml.greengrass.greengrass_v1_deployment:
    group_name: detector-site-a
    wait_timeout: 600
    rollback_on_failure: true
  register: detector_deployment

- name: Reset the group's deployments before removing it
  edgeml.greengrass.greengrass_v1_deployment:
    group_name: detector-site-a
    state: reset
    force_reset: true
"""

RETURN = r"""
group:
  description: The group.
  returned: when the group exists
  type: dict
  contains:
    id:
      description: Group id.
      type: str
    name:
      description: Group name.
      type: str
    latest_version:
      description: Latest group version id.
      type: str
deployment:
  description: The deployment this run made, waited on or found already done; null fields in check mode.
  returned: always
  type: dict
  contains:
    id:
      description: Deployment id.
      type: str
    arn:
      description: Deployment ARN.
      type: str
    group_version_id:
      description: Deployed group version.
      type: str
    type:
      description: Deployment type.
      type: str
    status:
      description: Last status seen (C(Success), C(Failure), C(InProgress), C(Building)).
      type: str
    error_message:
      description: C(ErrorMessage) on failure.
      type: str
    error_details:
      description: C(ErrorDetails) on failure, as C(detailed_error_code) and C(detailed_error_message).
      type: list
      elements: dict
rolled_back_to:
  description: The rollback deployment, after a failure with O(rollback_on_failure).
  returned: on failure with O(rollback_on_failure)
  type: dict
"""


import time  # noqa: E402

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v1 as gg  # noqa: E402

POLL_SECONDS = 3


def _describe(deployment, status, version_id=None):
    status = status or {}
    return {
        "id": deployment.get("DeploymentId"),
        "arn": deployment.get("DeploymentArn"),
        "group_version_id": version_id or gg.deployment_version_id(deployment),
        "type": deployment.get("DeploymentType") or status.get("DeploymentType"),
        "status": status.get("DeploymentStatus"),
        "error_message": status.get("ErrorMessage"),
        "error_details": gg.snake_content(status.get("ErrorDetails") or []),
    }


class DeploymentRun:
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params

    def group(self):
        group = gg.find_group(self.client, name=self.params["group_name"], group_id=self.params["group_id"])
        if not group:
            self.module.fail_json(
                msg="Greengrass group %r does not exist; create it with edgeml.greengrass.greengrass_v1_group first"
                % (self.params["group_name"] or self.params["group_id"])
            )
        return group

    def wait_for(self, group_id, deployment_id):
        """Poll until Success or Failure; (status, timed_out)."""
        deadline = time.time() + self.params["wait_timeout"]
        while True:
            status = gg.get_deployment_status(self.client, group_id, deployment_id)
            if status.get("DeploymentStatus") in gg.FINAL_STATUSES:
                return status, False
            if time.time() >= deadline:
                return status, True
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.time())))

    def last_successful_version(self, group_id, deployments, failed_version_id):
        """The version of the most recent successful deployment of another version, or None."""
        for deployment in deployments:
            if deployment.get("DeploymentType") not in ("NewDeployment", "Redeployment"):
                continue
            version_id = gg.deployment_version_id(deployment)
            if version_id == failed_version_id:
                continue
            status = gg.get_deployment_status(self.client, group_id, deployment["DeploymentId"])
            if status.get("DeploymentStatus") == "Success":
                return version_id
        return None

    def present(self):
        group = self.group()
        target = self.params["group_version_id"] or group.get("LatestVersion")
        if not target:
            self.module.fail_json(msg="Greengrass group %r has no version to deploy" % group.get("Name"))
        if self.params["group_version_id"]:
            try:
                gg.get_group_version(self.client, group["Id"], target)
            except AWSCallError as error:
                fail_aws_call(
                    self.module, error, "group_version_id %r is not a version of group %r" % (target, group.get("Name"))
                )

        deployments = gg.sort_deployments(gg.list_deployments(self.client, group["Id"]))
        latest = deployments[0] if deployments else None
        latest_status = None
        if (
            latest
            and latest.get("DeploymentType") in ("NewDeployment", "Redeployment")
            and gg.deployment_version_id(latest) == target
        ):
            latest_status = gg.get_deployment_status(self.client, group["Id"], latest["DeploymentId"])
        decision = gg.plan_deployment(target, latest, (latest_status or {}).get("DeploymentStatus"))
        summary = gg.group_summary(group)

        if decision == "none":
            return dict(changed=False, group=summary, deployment=_describe(latest, latest_status))
        if decision == "deploy":
            if self.module.check_mode:
                return dict(
                    changed=True, group=summary, deployment=_describe({"DeploymentType": "NewDeployment"}, None, target)
                )
            deployment = gg.create_deployment(self.client, group["Id"], target)
            deployment["DeploymentType"] = "NewDeployment"
            changed = True
        else:
            deployment, changed = latest, False

        if not self.params["wait"] or self.module.check_mode:
            status = gg.get_deployment_status(self.client, group["Id"], deployment["DeploymentId"])
            return dict(changed=changed, group=summary, deployment=_describe(deployment, status, target))

        status, timed_out = self.wait_for(group["Id"], deployment["DeploymentId"])
        described = _describe(deployment, status, target)
        if timed_out:
            self.module.fail_json(
                msg="Deployment %s of group %r version %s did not finish within %d seconds (last status %s)"
                % (
                    deployment["DeploymentId"],
                    group.get("Name"),
                    target,
                    self.params["wait_timeout"],
                    status.get("DeploymentStatus"),
                ),
                changed=changed,
                group=summary,
                deployment=described,
            )
        if status.get("DeploymentStatus") == "Success":
            return dict(changed=changed, group=summary, deployment=described)

        message = "Deployment %s of group %r version %s failed: %s%s" % (
            deployment["DeploymentId"],
            group.get("Name"),
            target,
            status.get("ErrorMessage") or "no error message",
            "".join(
                " [%s] %s" % (detail.get("DetailedErrorCode"), detail.get("DetailedErrorMessage"))
                for detail in status.get("ErrorDetails") or []
            ),
        )
        result = dict(changed=changed, group=summary, deployment=described)
        if self.params["rollback_on_failure"]:
            previous = self.last_successful_version(group["Id"], deployments, target)
            if previous is None:
                message += "; no earlier successful deployment to roll back to"
            else:
                rollback = gg.create_deployment(self.client, group["Id"], previous)
                rollback["DeploymentType"] = "NewDeployment"
                rollback_status, rollback_timed_out = self.wait_for(group["Id"], rollback["DeploymentId"])
                result["rolled_back_to"] = _describe(rollback, rollback_status, previous)
                result["changed"] = True
                message += "; rolled back to version %s (deployment %s: %s%s)" % (
                    previous,
                    rollback["DeploymentId"],
                    rollback_status.get("DeploymentStatus"),
                    ", timed out waiting" if rollback_timed_out else "",
                )
        self.module.fail_json(msg=message, **result)

    def reset(self):
        group = self.group()
        summary = gg.group_summary(group)
        deployments = gg.sort_deployments(gg.list_deployments(self.client, group["Id"]))
        if not deployments or deployments[0].get("DeploymentType") in ("ResetDeployment", "ForceResetDeployment"):
            return dict(changed=False, group=summary, deployment=_describe(deployments[0], None) if deployments else {})
        if self.module.check_mode:
            kind = "ForceResetDeployment" if self.params["force_reset"] else "ResetDeployment"
            return dict(changed=True, group=summary, deployment=_describe({"DeploymentType": kind}, None))
        reset = gg.reset_deployments(self.client, group["Id"], force=self.params["force_reset"])
        reset["DeploymentType"] = "ForceResetDeployment" if self.params["force_reset"] else "ResetDeployment"
        return dict(changed=True, group=summary, deployment=_describe(reset, None))


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            group_name=dict(type="str"),
            group_id=dict(type="str"),
            group_version_id=dict(type="str"),
            state=dict(type="str", choices=["present", "reset"], default="present"),
            force_reset=dict(type="bool", default=False),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=300),
            rollback_on_failure=dict(type="bool", default=False),
        ),
        required_one_of=[("group_name", "group_id")],
        mutually_exclusive=[("group_name", "group_id")],
        supports_check_mode=True,
    )
    problems = []
    if module.params["wait_timeout"] < 0:
        problems.append("wait_timeout must be 0 or more seconds, got %d" % module.params["wait_timeout"])
    if module.params["rollback_on_failure"] and not module.params["wait"]:
        problems.append("rollback_on_failure needs wait: true (the outcome must be known to roll back)")
    for key in ("group_name", "group_id", "group_version_id"):
        if module.params[key] is not None and not module.params[key].strip():
            problems.append("%s must not be empty" % key)
    if problems:
        module.fail_json(msg="Invalid greengrass_v1_deployment input: %s" % "; ".join(problems))

    run = DeploymentRun(module, module.client("greengrass"))
    try:
        result = run.present() if module.params["state"] == "present" else run.reset()
    except gg.GreengrassInputError as error:
        module.fail_json(msg=str(error))
    except AWSCallError as error:
        fail_aws_call(
            module,
            error,
            "Greengrass V1 deployment call failed for group %r"
            % (module.params["group_name"] or module.params["group_id"]),
        )

    module.exit_json(**result)


if __name__ == "__main__":
    main()
