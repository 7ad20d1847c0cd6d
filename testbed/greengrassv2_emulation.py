"""A minimal AWS IoT Greengrass V2 (``greengrassv2``) control plane inside the test bed's moto server.

Test equipment, not product code: moto 5.2.x has no ``greengrassv2``. ``install()`` (called by
``testbed/moto_server_with_fixes.py`` before the server starts) adds the REST routes botocore
uses for Greengrass V2 (``botocore/data/greengrassv2/2020-11-30/service-2.json``) to moto's
``greengrass`` app. V1 and V2 share the signing name ``greengrass``, so moto hands both to the same
Flask app; every V2 path starts with ``/greengrass/v2/`` and no V1 route does, so they cannot
collide. Product code reaches this only through ``AWS_ENDPOINT_URL`` / ``endpoint_url``.

Emulated (shapes and HTTP methods/URIs as in the service model; errors as ``restJson1`` with
``x-amzn-ErrorType``; every request is first checked against botocore's input shape - unknown or
missing members, types, lengths, ranges - and refused with ``ValidationException`` as the service
would, whatever client sent it):
  CreateComponentVersion (``inlineRecipe`` JSON or YAML; name and version read from the recipe;
    ``ConflictException`` for an existing name+version; artifacts ``s3://`` found in the
    emulated S3 get a ``Digest``/``Algorithm`` in the stored recipe, a missing one makes the
    version ``FAILED`` with ``errors`` naming the URI), DescribeComponent, GetComponent
    (``recipeOutputFormat`` JSON/YAML), ListComponents (scope PRIVATE), ListComponentVersions
    (newest first), DeleteComponent;
  CreateDeployment (target = an existing IoT thing group or thing; every component version must
    exist and be DEPLOYABLE unless its name starts with ``aws.greengrass.``; a new deployment
    makes the target's previous one INACTIVE), GetDeployment, ListDeployments (targetArn,
    historyFilter), CancelDeployment (only ACTIVE ones), DeleteDeployment (ACTIVE ones need a
    cancel first: ``ConflictException``);
  ListCoreDevices (thingGroupArn and status filters through the emulated IoT's group
    membership), GetCoreDevice, DeleteCoreDevice (the record only, not the thing), ListEffectiveDeployments
    (``ListEffectiveDeploymentsForCoreDevice``).
  ``maxResults``/``nextToken`` paging on every list.
  ``clientToken`` idempotency of CreateComponentVersion and CreateDeployment (``idempotency_cached``): the model's
    clientToken documentation says a repeated request with the token of a successful one gets "the successful
    response that it caches from the previous request", for up to 8 hours. Not documented, so the bed's choice: the
    same token with other request members is refused with ``ConflictException`` (the stricter answer).

A deployment creates its IoT job in the endpoint (the ``iotJobId`` it returns; a newer deployment to the same
target cancels the previous job), which the bed's data plane serves to devices over MQTT
(``iot_data_plane/jobs.py``); a device's update of that job becomes its status in ListEffectiveDeployments.

NOT emulated: public (AWS-published) components and their catalog, ``lambdaFunction`` recipe
sources, component platform resolution and dependency resolution, ``ServiceQuotaExceeded``,
the jobs' rollout, abort and timeout settings (stored and returned,
never executed), client devices, tags APIs
(``TagResource``/``ListTagsForResource``; tags given at creation are stored and returned),
multiple accounts (everything lives in moto's default account), IAM authorization.

Core devices also register the way a nucleus registers them: a fleet status message on
``$aws/things/<thing>/greengrassv2/health/json`` through the bed's MQTT broker (``on_health_message``).

Test-bed controls (for tests where no nucleus connects):

    POST /moto-api/static/greengrassv2/core-device
    {"thing_name": "...", "status": "HEALTHY"|"UNHEALTHY",          # default HEALTHY
     "core_version": "2.12.0", "platform": "linux", "architecture": "amd64", "region": "us-east-1"}

  registers (or updates) a core device as the nucleus does on its first connection; the IoT
  thing must exist (400 otherwise).

    POST /moto-api/static/greengrassv2/deployment-report
    {"thing_name": "...", "status": "SUCCEEDED"|"FAILED"|"IN_PROGRESS"|"QUEUED"|"TIMED_OUT"|
     "REJECTED"|"COMPLETED"|"CANCELED", "deployment_id": "...",     # optional: else every deployment
     "reason": "...", "error_stack": ["..."], "error_types": ["..."],
     "core_device_status": "HEALTHY"|"UNHEALTHY", "region": "us-east-1"}

  is what that device reports. An effective deployment that is not final yet (QUEUED or
  IN_PROGRESS) takes the report for its deployment id, else the device's standing report, and a
  final status then stays put, as on a real device. Deployments of a device's thing group that
  were superseded or canceled before the device finished read as CANCELED. Without a report a
  device's effective deployments stay QUEUED. ``/moto-api/reset`` forgets everything here with the
  rest of moto's state. Product code never uses these URLs.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import json
import re
import threading
import uuid

import yaml

_STATE_ATTR = "_testbed_greengrassv2"
_LOCK = threading.RLock()
_DEFAULT_REGION = "us-east-1"

FINAL_EXECUTION_STATUSES = ("SUCCEEDED", "FAILED", "COMPLETED", "TIMED_OUT", "CANCELED", "REJECTED")
EXECUTION_STATUSES = FINAL_EXECUTION_STATUSES + ("IN_PROGRESS", "QUEUED")
_VERSION_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_STATUS_BY_CODE = {"ValidationException": 400, "ResourceNotFoundException": 404, "ConflictException": 409}


class ServiceError(Exception):
    def __init__(self, code: str, message: str, resource_id: str = "", resource_type: str = ""):
        super().__init__(message)
        self.code = code
        self.body = {"message": message}
        if code in ("ResourceNotFoundException", "ConflictException"):
            self.body.update(resourceId=resource_id, resourceType=resource_type)

    def response(self):
        headers = {"x-amzn-ErrorType": self.code, "Content-Type": "application/json"}
        return _STATUS_BY_CODE[self.code], headers, json.dumps(dict(self.body, __type=self.code))


def _now() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()


def _version_key(version: str):
    match = _VERSION_RE.match(version)
    if not match:
        return (0, 0, 0, 0, version)
    major, minor, patch, pre = match.groups()
    # A pre-release sorts before its release (semantic versioning).
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre or "")


class _State:
    def __init__(self):
        self.components: dict[str, dict[str, dict]] = {}  # name -> version -> record
        self.deployments: dict[str, dict] = {}
        self.revisions: dict[str, int] = {}  # targetArn -> last revision
        self.core_devices: dict[str, dict] = {}
        self.reports: dict[tuple[str, str | None], dict] = {}  # (thing, deployment id or None)
        self.effective: dict[tuple[str, str], dict] = {}  # (thing, deployment id) -> execution
        # (operation, clientToken) -> (request members without the token, cached answer, time)
        self.idempotent_answers: dict[tuple[str, str], tuple[dict, tuple[int, dict], float]] = {}


IDEMPOTENCY_CACHE_SECONDS = 8 * 3600


def idempotency_cached(operation):
    """A create that answers a repeated ``clientToken`` with the first success's answer (see the module docstring)."""

    @functools.wraps(operation)
    def create(request, state: _State, region: str):
        body = json.loads(request.get_data() or b"{}")
        token = body.pop("clientToken", None)
        if token is None:
            return operation(request, state, region)
        key = (operation.__name__, token)
        cached = state.idempotent_answers.get(key)
        if cached and _now() - cached[2] < IDEMPOTENCY_CACHE_SECONDS:
            if cached[0] != body:
                raise ServiceError(
                    "ConflictException", "clientToken %s was used with other request members" % token, token, "token"
                )
            return cached[1]
        answer = operation(request, state, region)
        state.idempotent_answers[key] = (body, answer, _now())
        return answer

    return create


def _region(request) -> str:
    auth = request.headers.get("Authorization", "")
    match = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/", auth)
    return match.group(1) if match else _DEFAULT_REGION


def _state(region: str) -> _State:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.greengrass.models import greengrass_backends

    # Kept on moto's greengrass backend so that /moto-api/reset drops it with everything else.
    backend = greengrass_backends[DEFAULT_ACCOUNT_ID][region]
    if not hasattr(backend, _STATE_ATTR):
        setattr(backend, _STATE_ATTR, _State())
    return getattr(backend, _STATE_ATTR)


def _iot(region: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iot.models import iot_backends

    return iot_backends[DEFAULT_ACCOUNT_ID][region]


def _component_arn(region: str, name: str) -> str:
    from moto.core import DEFAULT_ACCOUNT_ID

    return "arn:aws:greengrass:%s:%s:components:%s" % (region, DEFAULT_ACCOUNT_ID, name)


def _split_component_arn(arn: str) -> tuple[str, str | None]:
    match = re.match(r"^arn:[^:]*:greengrass:[^:]*:(?:aws|\d+):components:([^:]+)(?::versions:([^:]+))?$", arn)
    if not match:
        raise ServiceError("ValidationException", "Invalid component ARN: %s" % arn)
    return match.group(1), match.group(2)


def _page(items: list, request, key: str) -> dict:
    try:
        start = int(request.args.get("nextToken") or 0)
        size = int(request.args.get("maxResults") or 50)
    except ValueError as exc:
        raise ServiceError("ValidationException", "Invalid nextToken or maxResults") from exc
    body = {key: items[start : start + size]}
    if start + size < len(items):
        body["nextToken"] = str(start + size)
    return body


# ---------------------------------------------------------------------------------------------
# Components


def _parse_recipe(raw: bytes) -> dict:
    text = raw.decode("utf-8")
    try:
        recipe = json.loads(text)
    except ValueError:
        try:
            recipe = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ServiceError("ValidationException", "The recipe is neither valid JSON nor YAML: %s" % exc) from exc
    if not isinstance(recipe, dict):
        raise ServiceError("ValidationException", "The recipe must be a JSON or YAML object")
    for field in ("RecipeFormatVersion", "ComponentName", "ComponentVersion"):
        if not recipe.get(field):
            raise ServiceError("ValidationException", "The recipe has no %s" % field)
    if not _NAME_RE.match(str(recipe["ComponentName"])):
        raise ServiceError("ValidationException", "Invalid ComponentName %r" % recipe["ComponentName"])
    if not _VERSION_RE.match(str(recipe["ComponentVersion"])):
        raise ServiceError(
            "ValidationException",
            "ComponentVersion %r is not a semantic version major.minor.patch" % recipe["ComponentVersion"],
        )
    return recipe


def _s3_object(uri: str) -> bytes | None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    bucket, _, key = uri[len("s3://") :].partition("/")
    try:
        obj = s3_backends[DEFAULT_ACCOUNT_ID]["global"].get_object(bucket, key)
    except Exception:  # noqa: BLE001 - moto raises its own missing-bucket/key errors
        return None
    return obj.value if obj is not None else None


def _resolve_artifacts(recipe: dict) -> dict:
    """Add the Digest AWS computes for each S3 artifact; {uri: error} for those it cannot read."""
    errors = {}
    for manifest in recipe.get("Manifests") or []:
        for artifact in (manifest or {}).get("Artifacts") or []:
            uri = (artifact or {}).get("URI") or (artifact or {}).get("Uri") or ""
            if not uri.startswith("s3://"):
                continue
            content = _s3_object(uri)
            if content is None:
                errors[uri] = "The artifact could not be found in S3 (bucket or key missing)"
                continue
            artifact["Digest"] = base64.b64encode(hashlib.sha256(content).digest()).decode("ascii")
            artifact["Algorithm"] = "SHA-256"
    return errors


@idempotency_cached
def create_component_version(request, state: _State, region: str):
    body = json.loads(request.get_data() or b"{}")
    if "lambdaFunction" in body:
        raise ServiceError("ValidationException", "lambdaFunction recipe sources are not emulated by the test bed")
    if not body.get("inlineRecipe"):
        raise ServiceError("ValidationException", "inlineRecipe is required")
    recipe = _parse_recipe(base64.b64decode(body["inlineRecipe"]))
    name, version = str(recipe["ComponentName"]), str(recipe["ComponentVersion"])
    arn = "%s:versions:%s" % (_component_arn(region, name), version)
    if version in state.components.get(name, {}):
        raise ServiceError(
            "ConflictException",
            "Component %s version %s already exists" % (name, version),
            resource_id=arn,
            resource_type="component",
        )
    errors = _resolve_artifacts(recipe)
    status = {"componentState": "DEPLOYABLE", "message": "NONE", "errors": {}}
    if errors:
        status = {"componentState": "FAILED", "message": "The artifacts could not be processed", "errors": errors}
    platforms = []
    for manifest in recipe.get("Manifests") or []:
        platform = (manifest or {}).get("Platform") or {}
        platforms.append({"name": platform.get("os", "all"), "attributes": {k: str(v) for k, v in platform.items()}})
    record = {
        "arn": arn,
        "componentName": name,
        "componentVersion": version,
        "creationTimestamp": _now(),
        "publisher": str(recipe.get("ComponentPublisher") or ""),
        "description": str(recipe.get("ComponentDescription") or ""),
        "status": status,
        "platforms": platforms,
        "tags": dict(body.get("tags") or {}),
        "recipe": recipe,
    }
    state.components.setdefault(name, {})[version] = record
    out = {k: record[k] for k in ("arn", "componentName", "componentVersion", "creationTimestamp", "status")}
    return 201, out


def _component_version(state: _State, arn: str) -> dict:
    name, version = _split_component_arn(arn)
    record = state.components.get(name, {}).get(version or "")
    if record is None:
        raise ServiceError("ResourceNotFoundException", "Component version %s not found" % arn, arn, "component")
    return record


def describe_component(request, state: _State, arn: str):
    record = _component_version(state, arn)
    keys = ("arn", "componentName", "componentVersion", "creationTimestamp", "publisher", "description")
    out = {k: record[k] for k in keys}
    out.update(status=record["status"], platforms=record["platforms"], tags=record["tags"])
    return 200, out


def get_component(request, state: _State, arn: str):
    record = _component_version(state, arn)
    fmt = request.args.get("recipeOutputFormat") or "JSON"
    if fmt not in ("JSON", "YAML"):
        raise ServiceError("ValidationException", "recipeOutputFormat must be JSON or YAML")
    text = json.dumps(record["recipe"]) if fmt == "JSON" else yaml.safe_dump(record["recipe"], sort_keys=False)
    recipe = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return 200, {"recipeOutputFormat": fmt, "recipe": recipe, "tags": record["tags"]}


def _sorted_versions(versions: dict) -> list[dict]:
    return sorted(versions.values(), key=lambda r: _version_key(r["componentVersion"]), reverse=True)


def list_components(request, state: _State, region: str):
    if request.args.get("scope") == "PUBLIC":
        return 200, {"components": []}  # the public catalog is not emulated
    items = []
    for name in sorted(state.components):
        versions = _sorted_versions(state.components[name])
        if not versions:
            continue
        latest = versions[0]
        items.append(
            {
                "arn": _component_arn(region, name),
                "componentName": name,
                "latestVersion": {
                    "arn": latest["arn"],
                    "componentVersion": latest["componentVersion"],
                    "creationTimestamp": latest["creationTimestamp"],
                    "description": latest["description"] or None,
                    "publisher": latest["publisher"] or None,
                    "platforms": latest["platforms"],
                },
            }
        )
    for item in items:
        item["latestVersion"] = {k: v for k, v in item["latestVersion"].items() if v is not None}
    return 200, _page(items, request, "components")


def list_component_versions(request, state: _State, arn: str):
    name, version = _split_component_arn(arn)
    if version is not None or not state.components.get(name):
        raise ServiceError("ResourceNotFoundException", "Component %s not found" % arn, arn, "component")
    items = [
        {"componentName": r["componentName"], "componentVersion": r["componentVersion"], "arn": r["arn"]}
        for r in _sorted_versions(state.components[name])
    ]
    return 200, _page(items, request, "componentVersions")


def delete_component(request, state: _State, arn: str):
    record = _component_version(state, arn)
    versions = state.components[record["componentName"]]
    del versions[record["componentVersion"]]
    if not versions:
        del state.components[record["componentName"]]
    return 204, None


# ---------------------------------------------------------------------------------------------
# Deployments and core devices


def _target_exists(region: str, target_arn: str) -> bool:
    iot = _iot(region)
    return target_arn in iot.thing_groups or target_arn in iot.things


def _check_components(state: _State, components: dict) -> None:
    for name, spec in (components or {}).items():
        version = (spec or {}).get("componentVersion")
        if name.startswith("aws.greengrass."):
            continue  # public components: their catalog is not emulated
        record = state.components.get(name, {}).get(version or "")
        if record is None:
            raise ServiceError(
                "ResourceNotFoundException",
                "Component %s version %s does not exist" % (name, version),
                "%s:%s" % (name, version),
                "component",
            )
        if record["status"]["componentState"] != "DEPLOYABLE":
            raise ServiceError(
                "ValidationException",
                "Component %s version %s is %s, not DEPLOYABLE" % (name, version, record["status"]["componentState"]),
            )
        merge = ((spec or {}).get("configurationUpdate") or {}).get("merge")
        if merge is not None:
            try:
                json.loads(merge)
            except ValueError as exc:
                raise ServiceError(
                    "ValidationException", "configurationUpdate.merge of %s is not valid JSON" % name
                ) from exc


# Parts of the bed that serve deployment jobs to devices (the IoT Jobs service of iot_data_plane/jobs.py):
# each has first_pending(region, thing) and jobs_changed(region, thing, first_before).
JOB_LISTENERS: list = []


def _target_things(region: str, target_arn: str) -> list[str]:
    iot = _iot(region)
    if target_arn in iot.thing_groups:
        return [thing.thing_name for thing in list(iot.thing_groups[target_arn].things.values())]
    thing = iot.things.get(target_arn)
    return [thing.thing_name] if thing else []


def job_document(region: str, record: dict) -> dict:
    """What the deployment's IoT job carries to the device: the deployment as created, with its configuration
    ARN (target and revision), as the nucleus reads it from the job."""
    from moto.core import DEFAULT_ACCOUNT_ID

    kind, _, name = record["targetArn"].split(":", 5)[5].partition("/")
    policies = record["deploymentPolicies"]
    return {
        "deploymentId": record["deploymentId"],
        "deploymentName": record["deploymentName"],
        "configurationArn": "arn:aws:greengrass:%s:%s:configuration:%s/%s:%s"
        % (region, DEFAULT_ACCOUNT_ID, kind, name, record["revisionId"]),
        "components": record["components"],
        "failureHandlingPolicy": policies.get("failureHandlingPolicy", "ROLLBACK"),
        "componentUpdatePolicy": policies.get(
            "componentUpdatePolicy", {"action": "NOTIFY_COMPONENTS", "timeoutInSeconds": 60}
        ),
        "configurationValidationPolicy": policies.get("configurationValidationPolicy", {"timeoutInSeconds": 60}),
        "creationTimestamp": int(record["creationTimestamp"] * 1000),
    }


def _create_deployment_job(region: str, record: dict) -> None:
    """The IoT job behind a deployment (manage-deployments.md): continuous for a thing group. Executions for a
    group's things are made when a device asks for its jobs (iot_data_plane/jobs.py), not here."""
    iot = _iot(region)
    configuration = record["iotJobConfiguration"]
    iot.create_job(
        job_id=record["iotJobId"],
        targets=[record["targetArn"]],
        document_source=None,
        document=json.dumps(job_document(region, record)),
        description=record["deploymentName"],
        presigned_url_config={},
        target_selection="CONTINUOUS" if ":thinggroup/" in record["targetArn"] else "SNAPSHOT",
        job_executions_rollout_config=configuration.get("jobExecutionsRolloutConfig") or {},
        document_parameters={},
        abort_config=configuration.get("abortConfig") or {},
        job_execution_retry_config={},
        scheduling_config={},
        timeout_config=configuration.get("timeoutConfig") or {},
    )
    # moto makes one execution per target, taking a group for a thing; the data plane makes them per thing.
    for key in [k for k in iot.job_executions if k[0] == record["iotJobId"]]:
        del iot.job_executions[key]
    iot.jobs[record["iotJobId"]].status = "IN_PROGRESS"


def _cancel_deployment_job(region: str, record: dict) -> None:
    iot = _iot(region)
    job = iot.jobs.get(record["iotJobId"])
    if job is None:
        return
    job.status = "CANCELED"
    for (job_id, _thing), execution in list(iot.job_executions.items()):
        if job_id == record["iotJobId"] and execution.status in ("QUEUED", "IN_PROGRESS"):
            execution.status = "CANCELED"


@idempotency_cached
def create_deployment(request, state: _State, region: str):
    from moto.core import DEFAULT_ACCOUNT_ID

    body = json.loads(request.get_data() or b"{}")
    target = body.get("targetArn") or ""
    if not re.match(r"^arn:[^:]*:iot:[^:]*:[0-9]+:(thing|thinggroup)/.+$", target):
        raise ServiceError("ValidationException", "targetArn must be an IoT thing or thing group ARN")
    if not _target_exists(region, target):
        raise ServiceError("ResourceNotFoundException", "Target %s does not exist" % target, target, "target")
    _check_components(state, body.get("components"))
    things = _target_things(region, target)
    first_before = {(id(each), t): each.first_pending(region, t) for each in JOB_LISTENERS for t in things}
    now = _now()
    for other in state.deployments.values():
        if other["targetArn"] == target and other["isLatestForTarget"]:
            other["isLatestForTarget"] = False
            if other["deploymentStatus"] == "ACTIVE":
                other["deploymentStatus"] = "INACTIVE"
            _cancel_deployment_job(region, other)
    state.revisions[target] = state.revisions.get(target, 0) + 1
    deployment_id = str(uuid.uuid4())
    job_id = str(uuid.uuid4())
    record = {
        "targetArn": target,
        "revisionId": str(state.revisions[target]),
        "deploymentId": deployment_id,
        "deploymentName": body.get("deploymentName") or "Deployment for %s" % target.rsplit("/", 1)[-1],
        "deploymentStatus": "ACTIVE",
        "iotJobId": job_id,
        "iotJobArn": "arn:aws:iot:%s:%s:job/%s" % (region, DEFAULT_ACCOUNT_ID, job_id),
        "components": body.get("components") or {},
        "deploymentPolicies": body.get("deploymentPolicies") or {},
        "iotJobConfiguration": body.get("iotJobConfiguration") or {},
        "creationTimestamp": now,
        "isLatestForTarget": True,
        "tags": body.get("tags") or {},
    }
    if body.get("parentTargetArn"):
        record["parentTargetArn"] = body["parentTargetArn"]
    state.deployments[deployment_id] = record
    _create_deployment_job(region, record)
    for listener in JOB_LISTENERS:
        for thing in things:
            listener.jobs_changed(region, thing, first_before[(id(listener), thing)])
    return 201, {"deploymentId": deployment_id, "iotJobId": job_id, "iotJobArn": record["iotJobArn"]}


class ComponentCatalog:
    """What the Greengrass data plane (iot_data_plane/greengrass_data.py) reads of the components (under ``lock``)."""

    lock = _LOCK

    @staticmethod
    def component_versions(region: str, name: str) -> list[dict]:
        """Every DEPLOYABLE version of the component, newest first: {arn, componentVersion, recipe}."""
        versions = _state(region).components.get(name or "", {})
        return [
            {"arn": r["arn"], "componentVersion": r["componentVersion"], "recipe": r["recipe"]}
            for r in _sorted_versions(versions)
            if r["status"]["componentState"] == "DEPLOYABLE"
        ]


class DeploymentJobs:
    """What the IoT Jobs service of the data plane asks of the deployments (under ``lock``)."""

    lock = _LOCK

    @staticmethod
    def deployment_jobs_for_thing(region: str, thing_name: str) -> list[str]:
        """Job IDs of the deployments that now apply to the thing: the latest ACTIVE one of each target
        that is the thing or one of its groups."""
        state = _state(region)
        targets = _device_group_arns(region, thing_name)
        jobs = []
        for record in sorted(state.deployments.values(), key=lambda r: r["creationTimestamp"]):
            target = record["targetArn"]
            if record["deploymentStatus"] != "ACTIVE" or not record["isLatestForTarget"]:
                continue
            if target in targets or target.endswith(":thing/" + thing_name):
                jobs.append(record["iotJobId"])
        return jobs

    @staticmethod
    def on_job_execution(region: str, thing_name: str, job_id: str, status: str, details: dict) -> None:
        """A device's update of a deployment job is its report on that deployment (the nucleus's status
        details: detailed-deployment-status, deployment-failure-cause, deployment-error-stack/-types)."""
        state = _state(region)
        deployment = next((d for d in state.deployments.values() if d["iotJobId"] == job_id), None)
        if deployment is None:
            return

        def as_list(value):
            if not value:
                return []
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = [value]
            return [str(v) for v in parsed] if isinstance(parsed, list) else [str(parsed)]

        state.reports[(thing_name, deployment["deploymentId"])] = {
            "status": status,
            "reason": details.get("deployment-failure-cause") or details.get("detailed-deployment-status"),
            "errorStack": as_list(details.get("deployment-error-stack")),
            "errorTypes": as_list(details.get("deployment-error-types")),
        }


def _deployment(state: _State, deployment_id: str) -> dict:
    record = state.deployments.get(deployment_id)
    if record is None:
        raise ServiceError(
            "ResourceNotFoundException", "Deployment %s not found" % deployment_id, deployment_id, "deployment"
        )
    return record


def get_deployment(request, state: _State, deployment_id: str):
    return 200, dict(_deployment(state, deployment_id))


def list_deployments(request, state: _State, region: str):
    target = request.args.get("targetArn")
    parent = request.args.get("parentTargetArn")
    history = request.args.get("historyFilter") or "LATEST_ONLY"
    if history not in ("ALL", "LATEST_ONLY"):
        raise ServiceError("ValidationException", "historyFilter must be ALL or LATEST_ONLY")
    items = []
    for record in sorted(state.deployments.values(), key=lambda r: r["creationTimestamp"], reverse=True):
        if target and record["targetArn"] != target:
            continue
        if parent and record.get("parentTargetArn") != parent:
            continue
        if history == "LATEST_ONLY" and not record["isLatestForTarget"]:
            continue
        keys = ("targetArn", "revisionId", "deploymentId", "deploymentName", "creationTimestamp")
        item = {k: record[k] for k in keys}
        item.update(deploymentStatus=record["deploymentStatus"], isLatestForTarget=record["isLatestForTarget"])
        if record.get("parentTargetArn"):
            item["parentTargetArn"] = record["parentTargetArn"]
        items.append(item)
    return 200, _page(items, request, "deployments")


def cancel_deployment(request, state: _State, deployment_id: str):
    record = _deployment(state, deployment_id)
    if record["deploymentStatus"] != "ACTIVE":
        raise ServiceError(
            "ConflictException",
            "Deployment %s is %s; only an ACTIVE deployment can be canceled"
            % (deployment_id, record["deploymentStatus"]),
            deployment_id,
            "deployment",
        )
    record["deploymentStatus"] = "CANCELED"
    return 200, {"message": "Deployment %s canceled" % deployment_id}


def delete_deployment(request, state: _State, deployment_id: str):
    record = _deployment(state, deployment_id)
    if record["deploymentStatus"] == "ACTIVE":
        raise ServiceError(
            "ConflictException",
            "Deployment %s is ACTIVE; cancel it before deleting it" % deployment_id,
            deployment_id,
            "deployment",
        )
    del state.deployments[deployment_id]
    return 204, None


def _device_group_arns(region: str, thing_name: str) -> set[str]:
    iot = _iot(region)
    arns = set()
    for group_arn, group in iot.thing_groups.items():
        if any(thing.thing_name == thing_name for thing in group.things.values()):
            arns.add(group_arn)
    return arns


def _core_device(state: _State, thing_name: str) -> dict:
    record = state.core_devices.get(thing_name)
    if record is None:
        raise ServiceError(
            "ResourceNotFoundException", "Core device %s not found" % thing_name, thing_name, "coreDevice"
        )
    return record


def list_core_devices(request, state: _State, region: str):
    group_arn = request.args.get("thingGroupArn")
    status = request.args.get("status")
    items = []
    for name in sorted(state.core_devices):
        record = state.core_devices[name]
        if group_arn and group_arn not in _device_group_arns(region, name):
            continue
        if status and record["status"] != status:
            continue
        keys = ("coreDeviceThingName", "status", "lastStatusUpdateTimestamp", "platform", "architecture", "runtime")
        items.append({k: record[k] for k in keys})
    return 200, _page(items, request, "coreDevices")


def get_core_device(request, state: _State, thing_name: str):
    return 200, dict(_core_device(state, thing_name))


def delete_core_device(request, state: _State, thing_name: str):
    # API reference, DeleteCoreDevice: "removes the core device from the list of core devices. This operation doesn't
    # delete the IoT thing." 204 on success (service model); an unknown device is ResourceNotFoundException.
    _core_device(state, thing_name)
    del state.core_devices[thing_name]
    return 204, None


def _effective_execution(state: _State, thing_name: str, deployment: dict) -> dict:
    key = (thing_name, deployment["deploymentId"])
    execution = state.effective.get(key)
    if execution is None:
        execution = {"coreDeviceExecutionStatus": "QUEUED", "modifiedTimestamp": deployment["creationTimestamp"]}
        state.effective[key] = execution
    if execution["coreDeviceExecutionStatus"] in FINAL_EXECUTION_STATUSES:
        return execution
    if deployment["deploymentStatus"] in ("CANCELED", "INACTIVE"):
        execution.update(
            coreDeviceExecutionStatus="CANCELED",
            modifiedTimestamp=_now(),
            reason="The deployment was %s before the device finished it" % deployment["deploymentStatus"].lower(),
        )
        return execution
    report = state.reports.get((thing_name, deployment["deploymentId"])) or state.reports.get((thing_name, None))
    if report and report["status"] != execution["coreDeviceExecutionStatus"]:
        execution.update(coreDeviceExecutionStatus=report["status"], modifiedTimestamp=_now())
        if report.get("reason"):
            execution["reason"] = report["reason"]
        details = {k: report[k] for k in ("errorStack", "errorTypes") if report.get(k)}
        if details:
            execution["statusDetails"] = details
        if deployment["targetArn"].endswith(":thing/" + thing_name) and report["status"] in FINAL_EXECUTION_STATUSES:
            # A deployment to one thing ends with that thing's outcome; a thing group's stays ACTIVE.
            deployment["deploymentStatus"] = "COMPLETED" if report["status"] in ("SUCCEEDED", "COMPLETED") else "FAILED"
    return execution


def list_effective_deployments(request, state: _State, region: str, thing_name: str):
    _core_device(state, thing_name)
    targets = _device_group_arns(region, thing_name)
    items = []
    for deployment in sorted(state.deployments.values(), key=lambda r: r["creationTimestamp"], reverse=True):
        target = deployment["targetArn"]
        if target not in targets and not target.endswith(":thing/" + thing_name):
            continue
        execution = _effective_execution(state, thing_name, deployment)
        item = {
            "deploymentId": deployment["deploymentId"],
            "deploymentName": deployment["deploymentName"],
            "iotJobId": deployment["iotJobId"],
            "iotJobArn": deployment["iotJobArn"],
            "targetArn": target,
            "creationTimestamp": deployment["creationTimestamp"],
        }
        item.update(execution)
        items.append(item)
    return 200, _page(items, request, "effectiveDeployments")


# ---------------------------------------------------------------------------------------------
# Routing

_ARN = r"(?P<arn>[^/]+)"
_ROUTES = [
    ("POST", r"^/greengrass/v2/createComponentVersion$", "CreateComponentVersion", create_component_version, "region"),
    ("GET", r"^/greengrass/v2/components$", "ListComponents", list_components, "region"),
    ("GET", r"^/greengrass/v2/components/" + _ARN + r"/metadata$", "DescribeComponent", describe_component, "arn"),
    (
        "GET",
        r"^/greengrass/v2/components/" + _ARN + r"/versions$",
        "ListComponentVersions",
        list_component_versions,
        "arn",
    ),
    ("GET", r"^/greengrass/v2/components/" + _ARN + r"$", "GetComponent", get_component, "arn"),
    ("DELETE", r"^/greengrass/v2/components/" + _ARN + r"$", "DeleteComponent", delete_component, "arn"),
    ("POST", r"^/greengrass/v2/deployments$", "CreateDeployment", create_deployment, "region"),
    ("GET", r"^/greengrass/v2/deployments$", "ListDeployments", list_deployments, "region"),
    ("GET", r"^/greengrass/v2/deployments/(?P<id>[^/]+)$", "GetDeployment", get_deployment, "id"),
    ("DELETE", r"^/greengrass/v2/deployments/(?P<id>[^/]+)$", "DeleteDeployment", delete_deployment, "id"),
    ("POST", r"^/greengrass/v2/deployments/(?P<id>[^/]+)/cancel$", "CancelDeployment", cancel_deployment, "id"),
    ("GET", r"^/greengrass/v2/coreDevices$", "ListCoreDevices", list_core_devices, "region"),
    ("GET", r"^/greengrass/v2/coreDevices/(?P<thing>[^/]+)$", "GetCoreDevice", get_core_device, "thing"),
    ("DELETE", r"^/greengrass/v2/coreDevices/(?P<thing>[^/]+)$", "DeleteCoreDevice", delete_core_device, "thing"),
    (
        "GET",
        r"^/greengrass/v2/coreDevices/(?P<thing>[^/]+)/effectiveDeployments$",
        "ListEffectiveDeployments",
        list_effective_deployments,
        "both",
    ),
]
# The same paths in moto's url-map syntax ("{0}" is the host part moto fills in).
FLASK_PATHS = [
    "{0}/greengrass/v2/createComponentVersion$",
    "{0}/greengrass/v2/components$",
    "{0}/greengrass/v2/components/(?P<arn>[^/]+)$",
    "{0}/greengrass/v2/components/(?P<arn>[^/]+)/metadata$",
    "{0}/greengrass/v2/components/(?P<arn>[^/]+)/versions$",
    "{0}/greengrass/v2/deployments$",
    "{0}/greengrass/v2/deployments/(?P<deployment_id>[^/]+)$",
    "{0}/greengrass/v2/deployments/(?P<deployment_id>[^/]+)/cancel$",
    "{0}/greengrass/v2/coreDevices$",
    "{0}/greengrass/v2/coreDevices/(?P<thing_name>[^/]+)$",
    "{0}/greengrass/v2/coreDevices/(?P<thing_name>[^/]+)/effectiveDeployments$",
]


def _json_response(status: int, body):
    if body is None:
        return status, {}, ""
    return status, {"Content-Type": "application/json"}, json.dumps(body)


@functools.cache
def _service_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("greengrassv2")


def validate_request(request, operation_name: str, uri_value: str | None) -> None:
    """Check a request against botocore's input shape, as the service does: unknown or missing members,
    types, lengths and ranges. Clients other than botocore (or a botocore with validation off) get the
    ValidationException the service would send."""
    from botocore.validate import ParamValidator

    shape = _service_model().operation_model(operation_name).input_shape
    if shape is None:
        return
    params = {}
    try:
        body = json.loads(request.get_data() or b"{}") if request.method in ("POST", "PUT") else {}
    except ValueError as exc:
        raise ServiceError("ValidationException", "The request body is not JSON") from exc
    if not isinstance(body, dict):
        raise ServiceError("ValidationException", "The request body must be a JSON object")
    body_members = set()
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri" and uri_value is not None:
            params[name] = uri_value
        elif location == "querystring" and request.args.get(wire_name) is not None:
            value = request.args.get(wire_name)
            if member.type_name == "integer":
                try:
                    value = int(value)
                except ValueError as exc:
                    raise ServiceError("ValidationException", "%s must be an integer" % wire_name) from exc
                # botocore checks only minimums; the service also refuses values above the maximum.
                if "max" in member.metadata and value > member.metadata["max"]:
                    raise ServiceError(
                        "ValidationException",
                        "%s=%d is not in the valid range %s-%s"
                        % (wire_name, value, member.metadata.get("min", ""), member.metadata["max"]),
                    )
            params[name] = value
        elif location is None:
            body_members.add(name)
            if name in body:
                params[name] = body[name]
    for name in set(body) - body_members:
        params[name] = body[name]  # reported as unknown by the validator
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise ServiceError("ValidationException", report.generate_report())


def handle(request, full_url, headers):
    """Entry point for every /greengrass/v2/ route: match the method and path, validate, run the operation."""
    region = _region(request)
    path = request.path
    for method, pattern, operation_name, operation, kind in _ROUTES:
        match = re.match(pattern, path)
        if not match or request.method != method:
            continue
        try:
            validate_request(request, operation_name, match.group(1) if match.groups() else None)
            with _LOCK:
                state = _state(region)
                if kind == "region":
                    return _json_response(*operation(request, state, region))
                if kind == "both":
                    return _json_response(*operation(request, state, region, match.group("thing")))
                return _json_response(*operation(request, state, match.group(1)))
        except ServiceError as error:
            return error.response()
        except ValueError as error:
            return ServiceError("ValidationException", "Malformed request: %s" % error).response()
    return ServiceError("ValidationException", "No Greengrass V2 operation %s %s" % (request.method, path)).response()


# ---------------------------------------------------------------------------------------------
# Test-bed controls


def _control_body(request) -> dict:
    try:
        body = json.loads(request.get_data(as_text=True) or "{}")
    except ValueError as exc:
        raise ServiceError("ValidationException", "the body is not JSON") from exc
    if not isinstance(body, dict) or not body.get("thing_name"):
        raise ServiceError("ValidationException", "thing_name is required")
    return body


def register_core_device(
    region: str,
    thing_name: str,
    status: str = "HEALTHY",
    core_version: str | None = None,
    platform: str | None = None,
    architecture: str | None = None,
    runtime: str | None = None,
) -> None:
    """Register (or update) a core device as the service does when its nucleus reports in."""
    if status not in ("HEALTHY", "UNHEALTHY"):
        raise ServiceError("ValidationException", "status must be HEALTHY or UNHEALTHY")
    with _LOCK:
        if not any(t.thing_name == thing_name for t in _iot(region).things.values()):
            raise ServiceError("ValidationException", "IoT thing %s does not exist" % thing_name)
        state = _state(region)
        record = state.core_devices.get(thing_name) or {"tags": {}}
        record.update(
            coreDeviceThingName=thing_name,
            coreVersion=core_version or record.get("coreVersion") or "2.12.0",
            platform=platform or record.get("platform") or "linux",
            architecture=architecture or record.get("architecture") or "amd64",
            runtime=runtime or record.get("runtime") or "aws_nucleus_classic",
            status=status,
            lastStatusUpdateTimestamp=_now(),
        )
        state.core_devices[thing_name] = record


HEALTH_TOPIC = re.compile(r"^\$aws/things/([^/]+)/greengrassv2/health/json$")


def on_health_message(region: str, topic: str, payload: bytes) -> None:
    """A nucleus's fleet status message (the nucleus's FleetStatusDetails: ggcVersion, platform, architecture,
    runtime, thing, overallDeviceStatus, ...) published on $aws/things/<thing>/greengrassv2/health/json registers
    or updates its core device (Greengrass V2 developer guide, telemetry.md and device-auth.md). A message whose
    JSON or fields are not a nucleus's, or that names another thing than its topic, changes nothing."""
    match = HEALTH_TOPIC.match(topic)
    if not match:
        return
    try:
        report = json.loads(payload)
    except ValueError:
        return
    if not isinstance(report, dict) or report.get("thing") != match.group(1):
        return
    try:
        register_core_device(
            region,
            match.group(1),
            status=report.get("overallDeviceStatus"),
            core_version=report.get("ggcVersion"),
            platform=report.get("platform"),
            architecture=report.get("architecture"),
            runtime=report.get("runtime"),
        )
    except ServiceError:
        return


def control_core_device(request, full_url, headers):
    try:
        body = _control_body(request)
        register_core_device(
            body.get("region") or _DEFAULT_REGION,
            body["thing_name"],
            status=body.get("status", "HEALTHY"),
            core_version=body.get("core_version"),
            platform=body.get("platform"),
            architecture=body.get("architecture"),
        )
    except ServiceError as error:
        return error.response()
    return 201, {}, ""


def control_deployment_report(request, full_url, headers):
    try:
        body = _control_body(request)
        region = body.get("region") or _DEFAULT_REGION
        if body.get("status") not in EXECUTION_STATUSES:
            raise ServiceError("ValidationException", "status must be one of %s" % ", ".join(EXECUTION_STATUSES))
        with _LOCK:
            state = _state(region)
            device = _core_device(state, body["thing_name"])
            report = {
                "status": body["status"],
                "reason": body.get("reason"),
                "errorStack": list(body.get("error_stack") or []),
                "errorTypes": list(body.get("error_types") or []),
            }
            state.reports[(body["thing_name"], body.get("deployment_id"))] = report
            if body.get("core_device_status") in ("HEALTHY", "UNHEALTHY"):
                device.update(status=body["core_device_status"], lastStatusUpdateTimestamp=_now())
    except ServiceError as error:
        return error.response()
    return 201, {}, ""


def install() -> None:
    """Mount the V2 routes on moto's greengrass app and the controls on moto's API (before it starts)."""
    from moto.greengrass import urls as gg_urls
    from moto.moto_api._internal import urls as moto_api_urls

    for path in FLASK_PATHS:
        gg_urls.url_paths[path] = handle
    moto_api_urls.url_paths["{0}/moto-api/static/greengrassv2/core-device"] = control_core_device
    moto_api_urls.url_paths["{0}/moto-api/static/greengrassv2/deployment-report"] = control_deployment_report


def control(endpoint_url: str, path: str, body: dict) -> None:
    """Client side of the test-bed control above (``core-device``, ``deployment-report``): what a nucleus on a device
    would report, played by a test. Raises on any answer but 200/201."""
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the local test endpoint, http only
        f"{endpoint_url}/moto-api/static/greengrassv2/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test endpoint
        if response.status not in (200, 201):
            raise RuntimeError(f"test-bed control {path} answered {response.status}")
