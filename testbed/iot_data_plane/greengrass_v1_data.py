"""The Greengrass V1 data plane of the test bed: how a V1 core learns of, fetches and reports its deployments.

Test equipment, in the local AWS endpoint's process, beside the V2 data plane (``greengrass_data.py``). AWS never
published the V1 core's wire protocol (the core is closed source), so the operations are named after the IAM
actions a V1 core's AWS IoT policy must grant and their resources, as "Minimal AWS IoT policy for the AWS IoT
Greengrass core device" lists them (Greengrass V1 developer guide, gg-sec.md):

- ``greengrass:GetDeployment`` on ``arn:aws:greengrass:<region>:<account>:/greengrass/groups/<group>/deployments/<id>``
  - ``GET /greengrass/groups/<group>/deployments/<id>/definition``: the deployed group version with its
  definitions (core, functions with their Lambda configuration, resources, subscriptions, loggers);
- ``greengrass:GetDeploymentArtifacts`` on the same resource - ``GET .../artifacts/lambda/<function ARN>`` (the
  Lambda version's code) and ``GET .../artifacts/resources/<resource id>`` (an S3 machine learning resource's
  object), raw bytes;
- ``greengrass:UpdateCoreDeploymentStatus`` on ``<deployment ARN>/cores/<URL-encoded thing ARN>`` -
  ``POST .../cores/<URL-encoded thing ARN>`` with ``{"Status": "InProgress"|"Success"|"Failure",
  "ErrorMessage", "ErrorDetails"}``; it becomes what GetDeploymentStatus answers (API reference,
  GetDeploymentStatusResponse).

Each request is authenticated with the device certificate (``https.py``) and authorized twice: the certificate
must be the ``CertificateArn`` of the deployed group's core (a V1 group has one core, "Core definition",
gg-config.md), and the policies attached to it must allow the action on the resource above (``policy.py``).

Notification: a V1 core keeps a shadow under ``$aws/things/<core thing>-gda/`` (gg-sec.md's minimal policy grants
the core Publish, Subscribe and Receive there, and nothing else of that name). Here, a CreateDeployment publishes
``{"state": {"deployment": {...}}}`` on ``$aws/things/<core>-gda/shadow/update/delta`` through the broker (so the
core's iot:Subscribe and iot:Receive apply), and a core that connects later publishes on ``.../shadow/get`` and
gets the latest deployment for it on ``.../shadow/get/accepted`` (to it only, as AWS's shadow service answers),
or ``.../get/rejected`` (404) when there is none. The document's shape is the bed's own.

NOT emulated: ResetDeployments reaching the core; connectivity info and group CA calls (``GetConnectivityInfo``,
``CreateCertificate``, ``AssumeRoleForGroup``); the Greengrass service role reading S3 for the ML resource (the
bed serves the object itself); a deployment's Building phase; more than one core per group (AWS allows one).
"""

from __future__ import annotations

import functools
import json
import re
import time
from urllib.parse import quote, unquote

from testbed.iot_data_plane.jobs import Outgoing
from testbed.iot_data_plane.registry import LOG

_DEPLOYMENT = r"^/greengrass/groups/([^/]+)/deployments/([^/]+)"
DEFINITION_PATH = re.compile(_DEPLOYMENT + r"/definition$")
LAMBDA_ARTIFACT_PATH = re.compile(_DEPLOYMENT + r"/artifacts/lambda/([^/]+)$")
RESOURCE_ARTIFACT_PATH = re.compile(_DEPLOYMENT + r"/artifacts/resources/([^/]+)$")
STATUS_PATH = re.compile(_DEPLOYMENT + r"/cores/([^/]+)$")
_SHADOW_GET = re.compile(r"^\$aws/things/(.+)-gda/shadow/get$")
REPORTABLE = ("InProgress", "Success", "Failure")
FINAL_STATUSES = ("Success", "Failure")
# The deployment types a core is told of (ResetDeployments is not emulated, see above).
NOTIFIED_TYPES = ("NewDeployment", "Redeployment")


class V1DataPlaneError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    def answer(self) -> tuple[int, dict]:
        return self.status, {"message": str(self)}


def _backends(account_id: str, region: str):
    from moto.greengrass.models import greengrass_backends

    return greengrass_backends[account_id][region]


def _definition(versions: dict, arn: str | None) -> dict:
    """The definition version an ARN (``.../definition/<kind>/<id>/versions/<version>``) names, or {}."""
    if not arn:
        return {}
    parts = arn.split("/")
    version = (versions.get(parts[-3]) or {}).get(parts[-1])
    if version is None:
        return {}
    # GetXxxDefinitionVersion's answer (with the bed's fixes: DefaultConfig kept, moto_server_with_fixes.py fix 2b);
    # moto's core and device versions hide the definition unless asked for detail, the others take no argument.
    try:
        answer = version.to_dict(include_detail=True)
    except TypeError:
        answer = version.to_dict()
    return json.loads(json.dumps(answer.get("Definition") or {}))


def record_deployment_outcome(deployment, outcome: dict) -> None:
    """What the device side reported on a V1 deployment - a core through this data plane, or the test-bed control of
    ``moto_server_with_fixes.py`` - as ``{"status", "error_message", "error_details"}``: GetDeploymentStatus answers
    it from now on."""
    from moto.greengrass import models as gg_models

    deployment.deployment_status = outcome["status"]
    deployment.update_at_datetime = gg_models.utcnow()
    deployment.testbed_outcome = dict(outcome, error_details=outcome.get("error_details") or [])


def _answers_errors(route):
    """A route's V1DataPlaneError becomes its answer (status and message), logged as the bed logs refusals."""

    @functools.wraps(route)
    def answer(*args):
        try:
            return route(*args)
        except V1DataPlaneError as error:
            LOG.info("greengrass v1 data plane: %s %s", error.status, error)
            return error.answer()

    return answer


class GreengrassV1DataPlane:
    def __init__(self, registry, publish=None):
        """publish(topic, payload): a message from the service through the broker (notifications)."""
        self.registry = registry
        self.publish = publish

    # --- what a deployment is ------------------------------------------------------------------------

    def _group_version(self, backend, deployment):
        version_id = deployment.group_arn.rsplit("/", 1)[-1]
        return backend.group_versions[deployment.group_id][version_id]

    def _cores(self, backend, deployment) -> list[dict]:
        version = self._group_version(backend, deployment)
        return _definition(backend.core_definition_versions, version.core_definition_version_arn).get("Cores") or []

    def _deployment(self, principal, group_id: str, deployment_id: str, action: str, resource_suffix: str = ""):
        backend = _backends(principal.account_id, principal.region)
        deployment = backend.deployments.get(deployment_id)
        if deployment is None or deployment.group_id != group_id:
            raise V1DataPlaneError(404, "Deployment %s of group %s does not exist" % (deployment_id, group_id))
        if not any(
            core.get("CertificateArn") == principal.certificate_arn for core in self._cores(backend, deployment)
        ):
            raise V1DataPlaneError(
                403, "%s: the certificate %s is not the core of group %s" % (action, principal.certificate_id, group_id)
            )
        decision = self.registry.authorize(principal, None, action, deployment.arn + resource_suffix)
        if not decision.allowed:
            raise V1DataPlaneError(403, "%s: %s" % (action, decision.reason))
        return backend, deployment

    def _document(self, backend, deployment) -> dict:
        version = self._group_version(backend, deployment)
        functions = _definition(backend.function_definition_versions, version.function_definition_version_arn)
        for function in functions.get("Functions") or []:
            lambda_function = self._lambda(deployment, function["FunctionArn"])
            function["Handler"] = lambda_function.handler
            function["Runtime"] = lambda_function.run_time
            function["CodeSha256"] = lambda_function.code_sha_256
        return {
            "DeploymentId": deployment.id,
            "DeploymentType": deployment.deployment_type,
            "GroupId": deployment.group_id,
            "GroupVersionId": version.version,
            "Core": self._cores(backend, deployment),
            "Functions": functions.get("Functions") or [],
            "FunctionDefaultConfig": functions.get("DefaultConfig") or {},
            "Resources": _definition(backend.resource_definition_versions, version.resource_definition_version_arn).get(
                "Resources"
            )
            or [],
            "Subscriptions": _definition(
                backend.subscription_definition_versions, version.subscription_definition_version_arn
            ).get("Subscriptions")
            or [],
        }

    @staticmethod
    def _lambda(deployment, function_arn: str):
        from moto.awslambda.models import lambda_backends

        account_id = deployment.arn.split(":")[4]
        try:
            return lambda_backends[account_id][deployment.region_name].get_function(function_arn)
        except Exception as error:  # noqa: BLE001 - moto's not-found errors differ by version
            raise V1DataPlaneError(404, "Lambda function %s: %s" % (function_arn, error)) from None

    # --- HTTPS routes (each answers its V1DataPlaneError as the error's status and message) -----------

    @_answers_errors
    def definition(self, principal, match, headers, body):
        backend, deployment = self._deployment(principal, match.group(1), match.group(2), "greengrass:GetDeployment")
        return 200, self._document(backend, deployment)

    @_answers_errors
    def lambda_artifact(self, principal, match, headers, body):
        backend, deployment = self._deployment(
            principal, match.group(1), match.group(2), "greengrass:GetDeploymentArtifacts"
        )
        function_arn = unquote(match.group(3))
        if function_arn not in [f["FunctionArn"] for f in self._document(backend, deployment)["Functions"]]:
            raise V1DataPlaneError(404, "%s is not a function of deployment %s" % (function_arn, deployment.id))
        return 200, bytes(self._lambda(deployment, function_arn).code_bytes)

    @_answers_errors
    def resource_artifact(self, principal, match, headers, body):
        from moto.s3.models import s3_backends

        backend, deployment = self._deployment(
            principal, match.group(1), match.group(2), "greengrass:GetDeploymentArtifacts"
        )
        resource_id = unquote(match.group(3))
        resources = {r["Id"]: r for r in self._document(backend, deployment)["Resources"]}
        model = ((resources.get(resource_id) or {}).get("ResourceDataContainer") or {}).get(
            "S3MachineLearningModelResourceData"
        )
        if model is None:
            raise V1DataPlaneError(
                404, "%s is not an S3 machine learning resource of deployment %s" % (resource_id, deployment.id)
            )
        bucket, _, key = model["S3Uri"][len("s3://") :].partition("/")
        try:
            stored = s3_backends[principal.account_id]["aws"].get_object(bucket, key)
        except Exception as error:  # noqa: BLE001 - NoSuchBucket / NoSuchKey
            raise V1DataPlaneError(404, "%s: %s" % (model["S3Uri"], error)) from None
        if stored is None:
            raise V1DataPlaneError(404, "%s does not exist" % model["S3Uri"])
        return 200, bytes(stored.value)

    @_answers_errors
    def update_status(self, principal, match, headers, body):
        thing_arn = unquote(match.group(3))
        backend, deployment = self._deployment(
            principal,
            match.group(1),
            match.group(2),
            "greengrass:UpdateCoreDeploymentStatus",
            "/cores/" + quote(thing_arn, safe=""),
        )
        if thing_arn not in [core.get("ThingArn") for core in self._cores(backend, deployment)]:
            raise V1DataPlaneError(403, "%s is not the core of group %s" % (thing_arn, deployment.group_id))
        try:
            report = json.loads(body or b"{}")
        except ValueError:
            raise V1DataPlaneError(400, "the body is not JSON") from None
        status = report.get("Status")
        if status not in REPORTABLE:
            raise V1DataPlaneError(400, "Status must be one of %s, got %r" % (", ".join(REPORTABLE), status))
        if deployment.deployment_status in FINAL_STATUSES:
            raise V1DataPlaneError(
                409, "Deployment %s already ended %s" % (deployment.id, deployment.deployment_status)
            )
        outcome = {
            "status": status,
            "error_message": report.get("ErrorMessage"),
            "error_details": report.get("ErrorDetails"),
        }
        record_deployment_outcome(deployment, outcome)
        LOG.info("greengrass v1: deployment %s of group %s: %s reported %s", deployment.id, deployment.group_id,
                 thing_arn, status)  # fmt: skip
        return 200, {}

    def routes(self, host: re.Pattern) -> list:
        return [
            (host, "GET", DEFINITION_PATH, self.definition),
            (host, "GET", LAMBDA_ARTIFACT_PATH, self.lambda_artifact),
            (host, "GET", RESOURCE_ARTIFACT_PATH, self.resource_artifact),
            (host, "POST", STATUS_PATH, self.update_status),
        ]

    # --- notifications over MQTT ---------------------------------------------------------------------

    def _notice(self, deployment) -> dict:
        return {
            "deploymentId": deployment.id,
            "deploymentType": deployment.deployment_type,
            "groupId": deployment.group_id,
            "groupVersionId": deployment.group_arn.rsplit("/", 1)[-1],
        }

    def _core_things(self, backend, deployment) -> list[str]:
        return [
            core["ThingArn"].split(":thing/", 1)[-1] for core in self._cores(backend, deployment) if "ThingArn" in core
        ]

    def deployment_created(self, account_id: str, region: str, deployment_id: str) -> None:
        """Called after CreateDeployment: tell the group's core, through the broker."""
        backend = _backends(account_id, region)
        deployment = backend.deployments.get(deployment_id)
        if deployment is None or self.publish is None:
            return
        if deployment.deployment_type not in NOTIFIED_TYPES:
            return
        for thing in self._core_things(backend, deployment):
            topic = "$aws/things/%s-gda/shadow/update/delta" % thing
            self.publish(topic, {"state": {"deployment": self._notice(deployment)}, "timestamp": int(time.time())})

    def on_publish(self, region: str, topic: str, payload: bytes) -> list[Outgoing]:
        """``$aws/things/<core>-gda/shadow/get``: the latest deployment for that core, to the requester only."""
        match = _SHADOW_GET.match(topic)
        if not match:
            return []
        thing = match.group(1)
        base = "$aws/things/%s-gda/shadow/get/" % thing
        account_id = self.registry.account_id
        backend = _backends(account_id, region)
        latest = None
        for deployment in list(backend.deployments.values()):
            if deployment.deployment_type in NOTIFIED_TYPES and thing in self._core_things(backend, deployment):
                latest = deployment
        if latest is None:
            return [
                Outgoing(
                    base + "rejected", {"code": 404, "message": "No shadow exists with name: '%s-gda'" % thing}, True
                )
            ]
        notice = {"state": {"desired": {"deployment": self._notice(latest)}}, "timestamp": int(time.time())}
        return [Outgoing(base + "accepted", notice, True)]
