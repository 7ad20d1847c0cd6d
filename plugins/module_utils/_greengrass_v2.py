# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""AWS IoT Greengrass V2 components and deployments (private to this collection).

Two halves:

* pure planning: recipe parsing and validation that names the offending input before anything is
  written, a content hash of a recipe and its artifacts, semantic-version arithmetic, module
  options -> the exact ``CreateDeployment`` request, and a normalization so a target's latest
  deployment can be compared with what is asked (AWS defaults, key order, configuration JSON);
* one small function per AWS call, each retried with jittered backoff on throttling, paginated
  where the API paginates.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import hashlib
import json
import re

from ansible.module_utils.common.dict_transformations import snake_dict_to_camel_dict
from ansible.module_utils.common.yaml import HAS_YAML, yaml_load
from ansible.module_utils.six import string_types

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import aws_call, client_token

RECIPE_FORMAT_VERSION = "2020-01-25"
# The tag that carries a component version's content hash, so a re-run can tell "same content"
# without trusting how the service re-serialises a recipe.
HASH_TAG = "edgeml:recipe-sha256"
# Greengrass component versions are major.minor.patch, optionally with a pre-release label.
VERSION_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?$")
COMPONENT_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
S3_URI_RE = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(\S+)$")
THING_GROUP_ARN_RE = re.compile(r"^arn:aws(?:-[a-z]+)*:iot:[a-z0-9-]+:\d{12}:thinggroup/[a-zA-Z0-9:_-]{1,128}$")
THING_GROUP_NAME_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
# Fields the service adds to artifacts in the recipe it stores.
SERVICE_ARTIFACT_FIELDS = ("Digest", "Algorithm")

# The tags that record which components of a thing group's deployment this collection put there, one tag per
# component with the name in the value (a tag key holds 128 characters and so does a component name; a deployment
# takes 200 tags: GreengrassV2 service model, TagMap/TagKey/TagValue). Components without such a tag are another's.
OWNED_TAG_PREFIX = "edgeml:component:"
MAX_DEPLOYMENT_TAGS = 200

SUCCESS_EXECUTION_STATUSES = ("SUCCEEDED", "COMPLETED")
FINAL_EXECUTION_STATUSES = ("SUCCEEDED", "COMPLETED", "FAILED", "TIMED_OUT", "CANCELED", "REJECTED")

# What AWS applies when a deployment leaves a policy out; filled in on both sides of a comparison.
DEFAULT_POLICIES = {
    "failureHandlingPolicy": "ROLLBACK",
    "componentUpdatePolicy": {"timeoutInSeconds": 60, "action": "NOTIFY_COMPONENTS"},
    "configurationValidationPolicy": {"timeoutInSeconds": 30},
}


class GreengrassV2InputError(ValueError):
    """Module input that cannot become a valid request; raised before any AWS call."""

    def __init__(self, problems):
        self.problems = list(problems)
        super(GreengrassV2InputError, self).__init__("; ".join(self.problems))


# ---------------------------------------------------------------------------------------------
# Components: recipes, hashes, versions


def _plain(value):
    """YAML reads an unquoted 2020-01-25 as a date; a recipe wants the text."""
    if isinstance(value, dict):
        return dict((k, _plain(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def parse_recipe(recipe):
    """A recipe given as a dict, or as JSON or YAML text -> dict (a deep copy)."""
    if isinstance(recipe, dict):
        return _plain(copy.deepcopy(recipe))
    if not isinstance(recipe, string_types) or not recipe.strip():
        raise GreengrassV2InputError(["recipe must be a dict or JSON/YAML text of a Greengrass component recipe"])
    try:
        parsed = json.loads(recipe)
    except ValueError as json_error:
        if not HAS_YAML:
            raise GreengrassV2InputError(
                ["recipe is not JSON and PyYAML is missing to read it as YAML"]
            ) from json_error
        try:
            parsed = yaml_load(recipe)
        except Exception as error:  # noqa: BLE001 - yaml's error classes; PyYAML may be absent at import time
            raise GreengrassV2InputError(["recipe is neither valid JSON nor YAML: %s" % error]) from error
    if not isinstance(parsed, dict):
        raise GreengrassV2InputError(
            ["recipe must be a mapping (JSON object / YAML mapping), got %s" % type(parsed).__name__]
        )
    return _plain(parsed)


def recipe_artifact_uris(recipe):
    uris = []
    for manifest in recipe.get("Manifests") or []:
        if not isinstance(manifest, dict):
            continue
        for artifact in manifest.get("Artifacts") or []:
            if isinstance(artifact, dict) and (artifact.get("URI") or artifact.get("Uri")):
                uris.append(artifact.get("URI") or artifact.get("Uri"))
    return uris


def validate_recipe(recipe, version_option=None):
    """Problems with a parsed recipe (and the module's version option), as messages naming the field."""
    problems = []
    if recipe.get("RecipeFormatVersion") != RECIPE_FORMAT_VERSION:
        problems.append(
            "recipe.RecipeFormatVersion must be %r, got %r" % (RECIPE_FORMAT_VERSION, recipe.get("RecipeFormatVersion"))
        )
    name = recipe.get("ComponentName")
    if not isinstance(name, string_types) or not COMPONENT_NAME_RE.match(name):
        problems.append("recipe.ComponentName must be 1-128 characters from [A-Za-z0-9._-], got %r" % (name,))
    elif name.startswith("aws.greengrass."):
        problems.append("recipe.ComponentName %r is in the aws.greengrass namespace reserved for AWS" % name)
    if version_option is None:
        version = recipe.get("ComponentVersion")
        if not isinstance(version, string_types) or not VERSION_RE.match(version):
            problems.append(
                "recipe.ComponentVersion must be a semantic version major.minor.patch (or set version), got %r"
                % (version,)
            )
    elif version_option != "auto" and not VERSION_RE.match(version_option):
        problems.append("version must be 'auto' or a semantic version major.minor.patch, got %r" % version_option)
    elif version_option == "auto" and recipe.get("ComponentVersion") is not None:
        if not VERSION_RE.match(str(recipe.get("ComponentVersion"))):
            problems.append(
                "recipe.ComponentVersion (the base for version: auto) must be major.minor.patch, got %r"
                % (recipe.get("ComponentVersion"),)
            )
    manifests = recipe.get("Manifests")
    if manifests is not None and not isinstance(manifests, list):
        problems.append("recipe.Manifests must be a list")
    for uri in recipe_artifact_uris(recipe):
        if uri.startswith("s3://") and not S3_URI_RE.match(uri):
            problems.append("recipe artifact URI %r is not s3://bucket/key" % uri)
        elif not uri.startswith(("s3://", "greengrass:", "docker:")):
            problems.append("recipe artifact URI %r must start with s3://, docker: or greengrass:" % uri)
    return problems


def strip_service_fields(recipe):
    """The recipe without the version and the fields the service adds, as compared between runs."""
    cleaned = copy.deepcopy(recipe)
    cleaned.pop("ComponentVersion", None)
    for manifest in cleaned.get("Manifests") or []:
        if not isinstance(manifest, dict):
            continue
        for artifact in manifest.get("Artifacts") or []:
            if isinstance(artifact, dict):
                for field in SERVICE_ARTIFACT_FIELDS:
                    artifact.pop(field, None)
    return cleaned


def content_hash(recipe, artifact_fingerprints):
    """SHA-256 of the recipe (without its version) and of each artifact's fingerprint (S3 ETag and size)."""
    payload = {
        "recipe": strip_service_fields(recipe),
        "artifacts": sorted([uri, fingerprint] for uri, fingerprint in (artifact_fingerprints or {}).items()),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def version_key(version):
    match = VERSION_RE.match(version or "")
    if not match:
        return (-1, -1, -1, 0, version or "")
    major, minor, patch, pre = match.groups()
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre or "")


def next_patch_version(existing_versions, base=None):
    """The version ``version: auto`` gives new content: base (or 1.0.0) if it is above every existing
    version, else the highest existing version's next patch (its pre-release label dropped)."""
    base = base or "1.0.0"
    if not existing_versions:
        return base
    highest = max(existing_versions, key=version_key)
    if version_key(base) > version_key(highest):
        return base
    major, minor, patch, pre = VERSION_RE.match(highest).groups()
    if pre:
        return "%s.%s.%s" % (major, minor, patch)
    return "%s.%s.%d" % (major, minor, int(patch) + 1)


def plan_component(desired_hash, requested_version, existing_hashes, base_version=None):
    """Decide what a present run does.

    existing_hashes: {version: content hash or None (unknown)} of the component's versions.
    requested_version: an explicit version or "auto".
    Returns (action, version) where action is "none", "create" or "conflict".
    """
    if requested_version == "auto":
        same = [v for v, h in existing_hashes.items() if h == desired_hash]
        if same:
            return "none", max(same, key=version_key)
        return "create", next_patch_version(list(existing_hashes), base_version)
    if requested_version not in existing_hashes:
        return "create", requested_version
    if existing_hashes[requested_version] == desired_hash:
        return "none", requested_version
    return "conflict", requested_version


def component_view(described, version_hash=None):
    if not described:
        return None
    status = described.get("status") or {}
    return {
        "arn": described.get("arn"),
        "name": described.get("componentName"),
        "version": described.get("componentVersion"),
        "recipe_sha256": version_hash or (described.get("tags") or {}).get(HASH_TAG),
        "state": status.get("componentState"),
        "status_message": status.get("message"),
        "errors": status.get("errors") or {},
        "publisher": described.get("publisher"),
        "description": described.get("description"),
        "tags": {k: v for k, v in (described.get("tags") or {}).items() if k != HASH_TAG},
    }


# ---------------------------------------------------------------------------------------------
# Deployments: options -> request, comparison


def _camel(value):
    return snake_dict_to_camel_dict(value, capitalize_first=False) if value else value


def _drop_none(value):
    if isinstance(value, dict):
        return dict((k, _drop_none(v)) for k, v in value.items() if v is not None and v != {} and v != [])
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def build_components(components):
    """The deployment module's ``components`` option -> ``ComponentDeploymentSpecifications``."""
    problems = []
    spec = {}
    if not components:
        problems.append("components must name at least one component")
    for name, options in (components or {}).items():
        options = options or {}
        if not COMPONENT_NAME_RE.match(name):
            problems.append("components: %r is not a component name (1-128 characters from [A-Za-z0-9._-])" % name)
            continue
        if not isinstance(options, dict):
            problems.append("components.%s must be a dict with component_version" % name)
            continue
        unknown = sorted(set(options) - set(["component_version", "configuration_update", "run_with"]))
        if unknown:
            problems.append(
                "components.%s: unknown keys %s (expected component_version, configuration_update, run_with)"
                % (name, ", ".join(unknown))
            )
        version = options.get("component_version")
        if not isinstance(version, string_types) or not VERSION_RE.match(version):
            problems.append("components.%s.component_version must be a semantic version, got %r" % (name, version))
        item = {"componentVersion": version}
        update = options.get("configuration_update") or {}
        if update:
            if not isinstance(update, dict) or set(update) - set(["merge", "reset"]):
                problems.append("components.%s.configuration_update takes only merge and reset" % name)
            else:
                merge = update.get("merge")
                if merge is not None and not isinstance(merge, string_types):
                    merge = json.dumps(merge, sort_keys=True)
                if merge is not None:
                    try:
                        if not isinstance(json.loads(merge), dict):
                            raise ValueError("not an object")
                    except ValueError:
                        problems.append("components.%s.configuration_update.merge must be a dict or JSON object" % name)
                reset = update.get("reset")
                if reset is not None and (
                    not isinstance(reset, list) or not all(isinstance(p, string_types) for p in reset)
                ):
                    problems.append("components.%s.configuration_update.reset must be a list of JSON pointers" % name)
                item["configurationUpdate"] = _drop_none({"merge": merge, "reset": reset})
        run_with = options.get("run_with") or {}
        if run_with:
            if not isinstance(run_with, dict) or set(run_with) - set(["posix_user", "system_resource_limits"]):
                problems.append("components.%s.run_with takes only posix_user and system_resource_limits" % name)
            else:
                item["runWith"] = _drop_none(_camel(run_with))
        spec[name] = _drop_none(item)
    if problems:
        raise GreengrassV2InputError(problems)
    return spec


def build_deployment_request(params, target_arn):
    policies = {
        "failureHandlingPolicy": params.get("failure_handling_policy"),
        "componentUpdatePolicy": _camel(params.get("component_update_policy")),
        "configurationValidationPolicy": _camel(params.get("configuration_validation_policy")),
    }
    request = {
        "targetArn": target_arn,
        "deploymentName": params.get("deployment_name"),
        "components": build_components(params.get("components")),
        "deploymentPolicies": _drop_none(policies),
        "iotJobConfiguration": _drop_none(_camel(params.get("iot_job_configuration") or {})),
    }
    return _drop_none(request)


def owned_components(deployment):
    """Names of the deployment's components that this collection deployed (from its ownership tags)."""
    tags = (deployment or {}).get("tags") or {}
    return set(name for key, name in tags.items() if key.startswith(OWNED_TAG_PREFIX))


def ownership_tags(component_names):
    return dict(("%s%d" % (OWNED_TAG_PREFIX, index), name) for index, name in enumerate(sorted(component_names), 1))


class ComponentsPlan(object):
    """What a new deployment of a thing group carries besides the components asked for.

    A new deployment replaces the target's previous one as a whole (AWS IoT Greengrass V2 developer guide, "Create
    deployments": "If a component is present in the previous deployment and not the new deployment, the core device
    uninstalls that component"; it advises starting from the existing deployment, read with GetDeployment), so a
    component another team or tool deployed to the same group would be uninstalled unless the new deployment
    carries it too. Of the latest deployment's components
    not asked for: those this collection deployed (ownership tags) are removed; the others (``others``) are kept
    as they are (``keep``), or with ``replace`` removed only when named in ``remove``. ``owned`` comes from the
    newest deployment that records it (``ownership_deployment``), so another tool's deployment that carried our
    components without our tags does not make them someone else's.
    """

    def __init__(self, desired, latest, owned, mode, remove):
        previous = (latest or {}).get("components") or {}
        remove = set(remove or [])
        not_asked = sorted(name for name in previous if name not in desired)
        others = [name for name in not_asked if name not in owned]
        self.unlisted = [name for name in others if name not in remove]
        kept = self.unlisted if mode == "keep" else []
        self.kept = dict((name, previous[name]) for name in kept)
        self.removed = [name for name in not_asked if name not in self.kept]
        self.components = dict(desired, **self.kept)
        self.refused = mode == "replace" and bool(self.unlisted)


def _merge_defaults(value, defaults):
    merged = copy.deepcopy(defaults)
    for key, item in (value or {}).items():
        if isinstance(item, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_defaults(item, merged[key])
        else:
            merged[key] = item
    return merged


def comparable_deployment(deployment):
    """What decides whether a deployment already does what is asked, in one canonical form."""
    components = {}
    for name, spec in (deployment.get("components") or {}).items():
        spec = copy.deepcopy(spec or {})
        update = spec.get("configurationUpdate") or {}
        if update.get("merge") is not None:
            try:
                update["merge"] = json.loads(update["merge"])
            except ValueError:
                pass
        spec["configurationUpdate"] = _drop_none(update)
        components[name] = _drop_none(spec)
    return {
        "deploymentName": deployment.get("deploymentName"),
        "components": components,
        "deploymentPolicies": _merge_defaults(deployment.get("deploymentPolicies"), DEFAULT_POLICIES),
        "iotJobConfiguration": _drop_none(deployment.get("iotJobConfiguration") or {}),
    }


def deployment_differs(desired_request, latest):
    """True when a new deployment is needed: no live latest one, or one with other content."""
    if not latest or latest.get("deploymentStatus") == "CANCELED":
        return True
    return comparable_deployment(desired_request) != comparable_deployment(latest)


def deployment_view(deployment):
    if not deployment:
        return None
    return {
        "deployment_id": deployment.get("deploymentId"),
        "deployment_name": deployment.get("deploymentName"),
        "target_arn": deployment.get("targetArn"),
        "revision_id": deployment.get("revisionId"),
        "status": deployment.get("deploymentStatus"),
        "iot_job_id": deployment.get("iotJobId"),
        "iot_job_arn": deployment.get("iotJobArn"),
        "is_latest_for_target": deployment.get("isLatestForTarget"),
        "components": deployment.get("components"),
        "deployment_policies": deployment.get("deploymentPolicies"),
        "iot_job_configuration": deployment.get("iotJobConfiguration"),
        "creation_timestamp": str(deployment.get("creationTimestamp")) if deployment.get("creationTimestamp") else None,
    }


def device_execution(thing_name, effective):
    """One core device's view of a deployment, from its ListEffectiveDeployments entry (or None)."""
    if not effective:
        return {"core_device": thing_name, "status": None, "reason": "the device has not received the deployment"}
    details = effective.get("statusDetails") or {}
    return {
        "core_device": thing_name,
        "status": effective.get("coreDeviceExecutionStatus"),
        "reason": effective.get("reason"),
        "error_stack": details.get("errorStack") or [],
        "error_types": details.get("errorTypes") or [],
    }


# ---------------------------------------------------------------------------------------------
# AWS calls (each raises AWSCallError naming its operation; the modules report it with fail_aws_call)


@aws_call("list components")
def list_components(client):
    paginator = client.get_paginator("list_components")
    return paginator.paginate(scope="PRIVATE").build_full_result().get("components", [])


def find_component(client, name):
    for component in list_components(client):
        if component.get("componentName") == name:
            return component
    return None


@aws_call("list component versions", missing=[])
def list_component_versions(client, component_arn):
    paginator = client.get_paginator("list_component_versions")
    return paginator.paginate(arn=component_arn).build_full_result().get("componentVersions", [])


@aws_call("describe component", missing=None)
def describe_component(client, version_arn):
    return client.describe_component(arn=version_arn)


@aws_call("get component recipe")
def get_component_recipe(client, version_arn):
    response = client.get_component(arn=version_arn, recipeOutputFormat="JSON")
    recipe = response["recipe"]
    return json.loads(recipe.decode("utf-8") if isinstance(recipe, bytes) else recipe)


def create_component_version(client, recipe, tags):
    """CreateComponentVersion with one clientToken for all its retries (the service then answers a repeat of a
    create whose response was lost with that create's answer, instead of ConflictException)."""
    return _create_component_version(client, json.dumps(recipe, sort_keys=True).encode("utf-8"), tags, client_token())


@aws_call("create component version")
def _create_component_version(client, inline_recipe, tags, token):
    return client.create_component_version(inlineRecipe=inline_recipe, tags=tags or {}, clientToken=token)


@aws_call("delete component", missing=False)
def delete_component(client, version_arn):
    client.delete_component(arn=version_arn)
    return True


@aws_call("head S3 object")
def head_s3_object(client, uri):
    """(etag, size) of an s3:// artifact, or None when it does not exist."""
    bucket, key = S3_URI_RE.match(uri).groups()
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except is_boto3_error_code(["404", "NoSuchKey", "NoSuchBucket", "NotFound"]):
        return None
    return "%s:%s" % (head.get("ETag", "").strip('"'), head.get("ContentLength"))


@aws_call("list deployments")
def list_deployments(client, target_arn, history="ALL"):
    paginator = client.get_paginator("list_deployments")
    result = paginator.paginate(targetArn=target_arn, historyFilter=history).build_full_result()
    return result.get("deployments", [])


@aws_call("get deployment", missing=None)
def get_deployment(client, deployment_id):
    return client.get_deployment(deploymentId=deployment_id)


def create_deployment(client, request):
    """CreateDeployment with one clientToken for all its retries: a lost response does not make a second one."""
    return _create_deployment(client, request, client_token())


@aws_call("create deployment")
def _create_deployment(client, request, token):
    return client.create_deployment(clientToken=token, **request)


@aws_call("cancel deployment")
def cancel_deployment(client, deployment_id):
    client.cancel_deployment(deploymentId=deployment_id)


@aws_call("delete deployment", missing=False)
def delete_deployment(client, deployment_id):
    client.delete_deployment(deploymentId=deployment_id)
    return True


@aws_call("list core devices")
def list_core_devices(client, thing_group_arn=None):
    paginator = client.get_paginator("list_core_devices")
    kwargs = {"thingGroupArn": thing_group_arn} if thing_group_arn else {}
    return paginator.paginate(**kwargs).build_full_result().get("coreDevices", [])


@aws_call("get core device", missing=None)
def get_core_device(client, thing_name):
    return client.get_core_device(coreDeviceThingName=thing_name)


@aws_call("delete core device", missing=False)
def delete_core_device(client, thing_name):
    """DeleteCoreDevice; False when the core device was not (or no longer) there, as after a lost response."""
    client.delete_core_device(coreDeviceThingName=thing_name)
    return True


@aws_call("list effective deployments", missing=[])
def list_effective_deployments(client, thing_name):
    paginator = client.get_paginator("list_effective_deployments")
    return paginator.paginate(coreDeviceThingName=thing_name).build_full_result().get("effectiveDeployments", [])


def latest_deployment(client, target_arn):
    """The target's latest deployment with its full content, or None."""
    latest = [d for d in list_deployments(client, target_arn, "LATEST_ONLY") if d.get("isLatestForTarget", True)]
    if not latest:
        return None
    return get_deployment(client, latest[0]["deploymentId"])


# How many older deployments of a target are read, newest first, to find the collection's record of what it deployed
# when the latest deployment was made by someone else.
OWNERSHIP_LOOKUPS = 20


def ownership_deployment(client, target_arn, latest):
    """The newest deployment of the target whose tags record what this collection deployed, or None."""
    if latest is None or owned_components(latest):
        return latest
    history = sorted(list_deployments(client, target_arn, "ALL"), key=lambda d: d["creationTimestamp"], reverse=True)
    older = [d["deploymentId"] for d in history if d["deploymentId"] != latest.get("deploymentId")]
    for deployment_id in older[:OWNERSHIP_LOOKUPS]:
        deployment = get_deployment(client, deployment_id)
        if deployment and owned_components(deployment):
            return deployment
    return None


def device_executions(client, thing_group_arn, deployment_id):
    """{thing name: execution view} for every core device in the thing group."""
    executions = {}
    for device in list_core_devices(client, thing_group_arn):
        name = device["coreDeviceThingName"]
        effective = [e for e in list_effective_deployments(client, name) if e.get("deploymentId") == deployment_id]
        executions[name] = device_execution(name, effective[0] if effective else None)
    return executions
