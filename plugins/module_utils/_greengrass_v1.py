# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""AWS IoT Greengrass V1 groups, definitions and deployments (private to this collection).

Two halves:

* pure planning: module options -> the exact ``Create*DefinitionVersion`` payloads, validation that
  names the offending input before anything is written, normalization so a definition's latest
  version can be compared with what is asked (order, AWS defaults), stable ids;
* one small function per AWS call, each retried with jittered backoff on throttling, paginated
  where the API paginates.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import re

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import aws_call, client_token

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

# kind -> what the Greengrass API calls it. The group version references each kind by ``group_key``.
KINDS = {
    "core": {"api": "core", "list_key": "Cores", "group_key": "CoreDefinitionVersionArn", "suffix": "core"},
    "function": {
        "api": "function",
        "list_key": "Functions",
        "group_key": "FunctionDefinitionVersionArn",
        "suffix": "functions",
    },
    "resource": {
        "api": "resource",
        "list_key": "Resources",
        "group_key": "ResourceDefinitionVersionArn",
        "suffix": "resources",
    },
    "subscription": {
        "api": "subscription",
        "list_key": "Subscriptions",
        "group_key": "SubscriptionDefinitionVersionArn",
        "suffix": "subscriptions",
    },
    "logger": {"api": "logger", "list_key": "Loggers", "group_key": "LoggerDefinitionVersionArn", "suffix": "loggers"},
}
KIND_ORDER = ("core", "function", "resource", "subscription", "logger")

_PARTITION = r"arn:aws(?:-[a-z]+)*"
THING_ARN_RE = re.compile(r"^" + _PARTITION + r":iot:[a-z0-9-]+:\d{12}:thing/([a-zA-Z0-9:_-]{1,128})$")
CERT_ARN_RE = re.compile(r"^" + _PARTITION + r":iot:[a-z0-9-]+:\d{12}:cert/[0-9a-f]{64}$")
# Greengrass needs a qualified Lambda ARN (version or alias); $LATEST is refused by the service.
LAMBDA_ARN_RE = re.compile(
    r"^" + _PARTITION + r":lambda:[a-z0-9-]*:(?:\d{12})?:function:[a-zA-Z0-9_-]{1,64}:[a-zA-Z0-9_-]{1,128}$"
)
ROLE_ARN_RE = re.compile(r"^" + _PARTITION + r":iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
SAGEMAKER_JOB_ARN_RE = re.compile(r"^" + _PARTITION + r":sagemaker:[a-z0-9-]+:\d{12}:training-job/[a-zA-Z0-9-]{1,63}$")
ID_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
S3_URI_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+$")
GROUP_NAME_MAX = 128

SUBSCRIPTION_ENDPOINTS_HELP = "'cloud', 'GGShadowService', a qualified Lambda ARN or an IoT thing ARN"


class GreengrassInputError(ValueError):
    """Module input that cannot be turned into a valid Greengrass group; raised before any AWS call."""

    def __init__(self, problems):
        self.problems = list(problems)
        super(GreengrassInputError, self).__init__("; ".join(self.problems))


def definition_name(group_name, kind):
    """Definitions created for a group carry its name, which is how they are recognised as its own."""
    return "%s-%s" % (group_name, KINDS[kind]["suffix"])


def stable_id(prefix, *parts):
    """An id derived from content: the same input gives the same id on every run."""
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:16]
    return "%s-%s" % (prefix, digest)


def _drop_empty(value):
    """Recursively remove None, empty containers and False booleans (AWS treats an absent flag as false)."""
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            item = _drop_empty(item)
            if item is None or item is False or item == {} or item == []:
                continue
            cleaned[key] = item
        return cleaned
    if isinstance(value, list):
        return [_drop_empty(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------------
# Module options -> API payloads


def _group_owner_setting(setting):
    if not setting:
        return None
    return {"AutoAddGroupOwner": setting.get("auto_add_group_owner"), "GroupOwner": setting.get("group_owner")}


def _run_as(run_as):
    if not run_as:
        return None
    return {"Uid": run_as.get("uid"), "Gid": run_as.get("gid")}


def _execution(execution):
    if not execution:
        return None
    return {"IsolationMode": execution.get("isolation_mode"), "RunAs": _run_as(execution.get("run_as"))}


def build_core(core):
    thing_match = THING_ARN_RE.match(core.get("thing_arn") or "")
    core_id = core.get("id") or (thing_match.group(1) if thing_match else None)
    sync_shadow = core.get("sync_shadow")
    return _drop_empty(
        {
            "Cores": [
                {
                    "Id": core_id,
                    "ThingArn": core.get("thing_arn"),
                    "CertificateArn": core.get("certificate_arn"),
                    "SyncShadow": True if sync_shadow is None else sync_shadow,
                }
            ]
        }
    )


def resource_id(resource):
    return resource.get("id") or resource.get("name")


def build_resources(resources):
    items = []
    for resource in resources:
        container = resource.get("resource_data_container") or {}
        data = {}
        device = container.get("local_device_resource_data")
        if device:
            data["LocalDeviceResourceData"] = {
                "SourcePath": device.get("source_path"),
                "GroupOwnerSetting": _group_owner_setting(device.get("group_owner_setting")),
            }
        volume = container.get("local_volume_resource_data")
        if volume:
            data["LocalVolumeResourceData"] = {
                "SourcePath": volume.get("source_path"),
                "DestinationPath": volume.get("destination_path"),
                "GroupOwnerSetting": _group_owner_setting(volume.get("group_owner_setting")),
            }
        for option, api_key, source_key, source_api in (
            ("s3_machine_learning_model_resource_data", "S3MachineLearningModelResourceData", "s3_uri", "S3Uri"),
            (
                "sage_maker_machine_learning_model_resource_data",
                "SageMakerMachineLearningModelResourceData",
                "sage_maker_job_arn",
                "SageMakerJobArn",
            ),
        ):
            model = container.get(option)
            if model:
                owner = model.get("owner_setting") or {}
                data[api_key] = {
                    "DestinationPath": model.get("destination_path"),
                    source_api: model.get(source_key),
                    "OwnerSetting": {
                        "GroupOwner": owner.get("group_owner"),
                        "GroupPermission": owner.get("group_permission"),
                    },
                }
        items.append({"Id": resource_id(resource), "Name": resource.get("name"), "ResourceDataContainer": data})
    return _drop_empty({"Resources": items})


def function_id(function):
    return function.get("id") or stable_id("function", function.get("function_arn") or "")


def build_functions(functions, default_config=None):
    items = []
    for function in functions:
        environment = function.get("environment") or {}
        policies = [
            {"ResourceId": policy.get("resource_id"), "Permission": policy.get("permission")}
            for policy in environment.get("resource_access_policies") or []
        ]
        configuration = {
            "Pinned": function.get("pinned"),
            "MemorySize": function.get("memory_size"),
            "Timeout": function.get("timeout"),
            "EncodingType": function.get("encoding_type"),
            "Executable": function.get("executable"),
            "ExecArgs": function.get("exec_args"),
            "Environment": {
                "Variables": dict(environment.get("variables") or {}),
                "ResourceAccessPolicies": policies,
                "AccessSysfs": environment.get("access_sysfs"),
                "Execution": _execution(environment.get("execution")),
            },
        }
        items.append(
            {
                "Id": function_id(function),
                "FunctionArn": function.get("function_arn"),
                "FunctionConfiguration": configuration,
            }
        )
    payload = {"Functions": items}
    if default_config:
        payload["DefaultConfig"] = {"Execution": _execution(default_config.get("execution"))}
    return _drop_empty(payload)


def subscription_id(subscription):
    return subscription.get("id") or stable_id(
        "subscription",
        subscription.get("source") or "",
        subscription.get("subject") or "",
        subscription.get("target") or "",
    )


def build_subscriptions(subscriptions):
    items = [
        {
            "Id": subscription_id(subscription),
            "Source": subscription.get("source"),
            "Subject": subscription.get("subject"),
            "Target": subscription.get("target"),
        }
        for subscription in subscriptions
    ]
    return _drop_empty({"Subscriptions": items})


def logger_id(logger):
    return logger.get("id") or "%s-%s" % (logger.get("component"), logger.get("type"))


def build_loggers(loggers):
    items = [
        {
            "Id": logger_id(logger),
            "Component": logger.get("component"),
            "Level": logger.get("level"),
            "Type": logger.get("type"),
            "Space": logger.get("space"),
        }
        for logger in loggers
    ]
    return _drop_empty({"Loggers": items})


def desired_definitions(params):
    """{kind: payload} for every kind the options ask for; a kind left out or empty has no definition."""
    desired = {"core": build_core(params["core"])}
    if params.get("functions"):
        desired["function"] = build_functions(params["functions"], params.get("default_config"))
    if params.get("resources"):
        desired["resource"] = build_resources(params["resources"])
    if params.get("subscriptions"):
        desired["subscription"] = build_subscriptions(params["subscriptions"])
    if params.get("loggers"):
        desired["logger"] = build_loggers(params["loggers"])
    return desired


# ---------------------------------------------------------------------------------------------
# Validation (before any AWS call)


def _valid_topic(subject):
    """MQTT topic filter rules: '#' only as the whole last level, '+' only as a whole level."""
    levels = subject.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _check_absolute(path, where, problems):
    if not path or not path.startswith("/"):
        problems.append("%s must be an absolute path, got %r" % (where, path))


def _check_duplicates(ids, what, problems):
    seen = {}
    for index, item_id in enumerate(ids):
        if item_id in seen:
            problems.append(
                "%s[%d] has the same id %r as %s[%d]; ids must be unique" % (what, index, item_id, what, seen[item_id])
            )
        else:
            seen[item_id] = index


def _check_id(item_id, where, problems):
    if item_id is not None and not ID_RE.match(item_id):
        problems.append("%s %r must match [a-zA-Z0-9:_-]{1,128}" % (where, item_id))


def _check_execution(execution, where, problems):
    if not execution:
        return
    run_as = execution.get("run_as") or {}
    for key in ("uid", "gid"):
        if run_as.get(key) is not None and run_as[key] < 0:
            problems.append("%s.run_as.%s must be 0 or greater, got %r" % (where, key, run_as[key]))


def validate_group_params(params):
    """Raise GreengrassInputError listing every problem in the options, each naming its input."""
    problems = []
    name = params.get("name") or ""
    if not name.strip():
        problems.append("name must not be empty")
    elif len(name) > GROUP_NAME_MAX:
        problems.append("name must be at most %d characters" % GROUP_NAME_MAX)

    role_arn = params.get("role_arn")
    if role_arn is not None and not ROLE_ARN_RE.match(role_arn):
        problems.append("role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), got %r" % role_arn)

    if params.get("state", "present") == "absent":
        if problems:
            raise GreengrassInputError(problems)
        return

    core = params.get("core")
    if not core:
        problems.append("core is required when state is present")
    else:
        if not THING_ARN_RE.match(core.get("thing_arn") or ""):
            problems.append(
                "core.thing_arn must look like arn:aws:iot:<region>:<account>:thing/<name>, got %r"
                % core.get("thing_arn")
            )
        if not CERT_ARN_RE.match(core.get("certificate_arn") or ""):
            problems.append(
                "core.certificate_arn must look like arn:aws:iot:<region>:<account>:cert/<64 hex digits>, got %r"
                % core.get("certificate_arn")
            )
        _check_id(core.get("id"), "core.id", problems)

    resources = params.get("resources") or []
    resource_ids = []
    for index, resource in enumerate(resources):
        where = "resources[%d]" % index
        if not (resource.get("name") or "").strip():
            problems.append("%s.name must not be empty" % where)
        rid = resource_id(resource)
        _check_id(rid, "%s.id (defaults to its name)" % where, problems)
        resource_ids.append(rid)
        container = resource.get("resource_data_container") or {}
        given = [key for key, value in container.items() if value]
        if len(given) != 1:
            problems.append(
                "%s.resource_data_container must set exactly one of local_device_resource_data, "
                "local_volume_resource_data, s3_machine_learning_model_resource_data, "
                "sage_maker_machine_learning_model_resource_data; got %s" % (where, given or "none")
            )
        device = container.get("local_device_resource_data")
        if device:
            source = device.get("source_path") or ""
            if not source.startswith("/dev/"):
                problems.append(
                    "%s.resource_data_container.local_device_resource_data.source_path must be under /dev/, got %r"
                    % (where, source)
                )
        volume = container.get("local_volume_resource_data")
        if volume:
            vwhere = "%s.resource_data_container.local_volume_resource_data" % where
            _check_absolute(volume.get("source_path"), vwhere + ".source_path", problems)
            _check_absolute(volume.get("destination_path"), vwhere + ".destination_path", problems)
            source = volume.get("source_path") or ""
            if source == "/sys" or source.startswith("/sys/"):
                problems.append("%s.source_path must not be /sys or below it (Greengrass refuses it)" % vwhere)
        s3_model = container.get("s3_machine_learning_model_resource_data")
        if s3_model:
            mwhere = "%s.resource_data_container.s3_machine_learning_model_resource_data" % where
            if not S3_URI_RE.match(s3_model.get("s3_uri") or ""):
                problems.append(
                    "%s.s3_uri must look like s3://<bucket>/<key>, got %r" % (mwhere, s3_model.get("s3_uri"))
                )
            _check_absolute(s3_model.get("destination_path"), mwhere + ".destination_path", problems)
        sm_model = container.get("sage_maker_machine_learning_model_resource_data")
        if sm_model:
            mwhere = "%s.resource_data_container.sage_maker_machine_learning_model_resource_data" % where
            if not SAGEMAKER_JOB_ARN_RE.match(sm_model.get("sage_maker_job_arn") or ""):
                problems.append(
                    "%s.sage_maker_job_arn must be a SageMaker training job ARN, got %r"
                    % (mwhere, sm_model.get("sage_maker_job_arn"))
                )
            _check_absolute(sm_model.get("destination_path"), mwhere + ".destination_path", problems)
    _check_duplicates(resource_ids, "resources", problems)
    _check_duplicates([r.get("name") for r in resources], "resources (by name)", problems)

    functions = params.get("functions") or []
    function_arns = set()
    for index, function in enumerate(functions):
        where = "functions[%d]" % index
        arn = function.get("function_arn") or ""
        if not LAMBDA_ARN_RE.match(arn):
            problems.append(
                "%s.function_arn must be a qualified Lambda ARN "
                "(arn:aws:lambda:<region>:<account>:function:<name>:<version or alias>; $LATEST is not allowed), got %r"
                % (where, arn)
            )
        function_arns.add(arn)
        _check_id(function.get("id"), where + ".id", problems)
        for key in ("memory_size", "timeout"):
            if function.get(key) is not None and function[key] <= 0:
                problems.append("%s.%s must be greater than 0, got %r" % (where, key, function[key]))
        environment = function.get("environment") or {}
        for pindex, policy in enumerate(environment.get("resource_access_policies") or []):
            pwhere = "%s.environment.resource_access_policies[%d]" % (where, pindex)
            if policy.get("resource_id") not in resource_ids:
                problems.append(
                    "%s.resource_id %r is not the id of any entry in resources (ids: %s)"
                    % (pwhere, policy.get("resource_id"), ", ".join(str(r) for r in resource_ids) or "none")
                )
            if policy.get("permission") not in ("ro", "rw"):
                problems.append("%s.permission must be 'ro' or 'rw', got %r" % (pwhere, policy.get("permission")))
        _check_execution(environment.get("execution"), where + ".environment.execution", problems)
    _check_duplicates([function_id(f) for f in functions], "functions", problems)
    _check_duplicates([f.get("function_arn") for f in functions], "functions (by function_arn)", problems)
    _check_execution((params.get("default_config") or {}).get("execution"), "default_config.execution", problems)

    subscriptions = params.get("subscriptions") or []
    for index, subscription in enumerate(subscriptions):
        where = "subscriptions[%d]" % index
        subject = subscription.get("subject") or ""
        if not subject.strip():
            problems.append("%s.subject must be a non-empty MQTT topic" % where)
        elif subject != subject.strip() or not _valid_topic(subject):
            problems.append(
                "%s.subject %r is not a valid MQTT topic filter ('#' only as the last level, '+' only as a whole level)"
                % (where, subject)
            )
        for end in ("source", "target"):
            value = subscription.get(end) or ""
            if value in ("cloud", "GGShadowService") or THING_ARN_RE.match(value):
                continue
            if LAMBDA_ARN_RE.match(value):
                if value not in function_arns:
                    problems.append(
                        "%s.%s %r is a Lambda that is not in functions; add it there first" % (where, end, value)
                    )
                continue
            problems.append("%s.%s must be %s, got %r" % (where, end, SUBSCRIPTION_ENDPOINTS_HELP, value))
        _check_id(subscription.get("id"), where + ".id", problems)
    _check_duplicates([subscription_id(s) for s in subscriptions], "subscriptions", problems)

    loggers = params.get("loggers") or []
    for index, logger in enumerate(loggers):
        where = "loggers[%d]" % index
        if logger.get("space") is not None:
            if logger["space"] <= 0:
                problems.append("%s.space must be greater than 0 (KB), got %r" % (where, logger["space"]))
            elif logger.get("type") != "FileSystem":
                problems.append("%s.space applies only to type FileSystem" % where)
        _check_id(logger.get("id"), where + ".id", problems)
    _check_duplicates([logger_id(logger) for logger in loggers], "loggers", problems)

    if problems:
        raise GreengrassInputError(problems)


# ---------------------------------------------------------------------------------------------
# Comparison and planning


def normalize_definition(kind, definition):
    """A definition version's content in a canonical form, so equal meaning compares equal."""
    definition = _drop_empty(copy.deepcopy(definition or {}))
    items = sorted(definition.get(KINDS[kind]["list_key"]) or [], key=lambda item: item.get("Id") or "")
    if kind == "function":
        for item in items:
            configuration = item.get("FunctionConfiguration") or {}
            if configuration.get("EncodingType") == "json":  # the API's default
                del configuration["EncodingType"]
            environment = configuration.get("Environment") or {}
            if environment.get("ResourceAccessPolicies"):
                environment["ResourceAccessPolicies"] = sorted(
                    environment["ResourceAccessPolicies"], key=lambda p: p.get("ResourceId") or ""
                )
    normalized = {KINDS[kind]["list_key"]: items}
    if kind == "function" and definition.get("DefaultConfig"):
        normalized["DefaultConfig"] = definition["DefaultConfig"]
    return _drop_empty(normalized)


def definitions_equal(kind, left, right):
    return normalize_definition(kind, left) == normalize_definition(kind, right)


def definition_id_from_version_arn(arn):
    """.../greengrass/definition/<kind>s/<definition id>/versions/<version id> -> (definition id, version id)."""
    match = re.search(r"/definition/[a-z]+/([^/]+)/versions/([^/]+)$", arn or "")
    return (match.group(1), match.group(2)) if match else (None, None)


def version_id_from_arn(arn):
    match = re.search(r"/versions/([^/]+)$", arn or "")
    return match.group(1) if match else None


def plan_definition(kind, desired, owned):
    """What to do for one kind: 'keep' the owned definition's latest version, add a 'new_version', or 'create' it."""
    if desired is None:
        return "unused"
    if owned is None:
        return "create"
    if definitions_equal(kind, desired, owned.get("content")):
        return "keep"
    return "new_version"


def desired_group_definition(current_group_definition, arns):
    """The group version to have: managed kinds from ``arns``; kinds it does not manage (devices, connectors) kept."""
    managed_keys = set(info["group_key"] for info in KINDS.values())
    wanted = dict(
        (key, value) for key, value in (current_group_definition or {}).items() if key not in managed_keys and value
    )
    for kind, arn in arns.items():
        if arn:
            wanted[KINDS[kind]["group_key"]] = arn
    return wanted


# ---------------------------------------------------------------------------------------------
# Deployment decisions

DEPLOYING_STATUSES = ("InProgress", "Building")
FINAL_STATUSES = ("Success", "Failure")


def sort_deployments(deployments):
    """Newest first (CreatedAt is ISO 8601, so it sorts as text)."""
    return sorted(deployments or [], key=lambda d: d.get("CreatedAt") or "", reverse=True)


def deployment_version_id(deployment):
    """ListDeployments' GroupArn is the deployed group *version* ARN."""
    return version_id_from_arn(deployment.get("GroupArn"))


def plan_deployment(target_version_id, latest_deployment, latest_status):
    """'none' (already deployed), 'wait' (the same version is on its way) or 'deploy'.

    Only the newest deployment counts: an older success of this version was superseded by whatever
    came after it (another version, or a reset).
    """
    if not latest_deployment or latest_deployment.get("DeploymentType") not in ("NewDeployment", "Redeployment"):
        return "deploy"
    if deployment_version_id(latest_deployment) != target_version_id:
        return "deploy"
    if latest_status == "Success":
        return "none"
    if latest_status in DEPLOYING_STATUSES:
        return "wait"
    return "deploy"


# ---------------------------------------------------------------------------------------------
# AWS calls

# The codes that say a group or definition does not exist. The service model names only BadRequestException for
# these reads; the service answers an unknown ID with IdNotFoundException (HTTP 404), as moto's greengrass backend
# reproduces; the other two are kept for an answer in the newer services' style.
MISSING_CODES = ("IdNotFoundException", "NotFoundException", "ResourceNotFoundException")


def _kind_api(kind):
    api = KINDS[kind]["api"]
    return api, "%sDefinitionId" % api.capitalize(), "%sDefinitionVersionId" % api.capitalize()


@aws_call("list groups")
def list_groups(client):
    return client.get_paginator("list_groups").paginate().build_full_result().get("Groups", [])


def find_groups_by_name(client, name):
    return [group for group in list_groups(client) if group.get("Name") == name]


@aws_call("get group", missing=None, missing_codes=MISSING_CODES)
def get_group(client, group_id):
    return client.get_group(GroupId=group_id)


@aws_call("create group")
def create_group(client, name, initial_version):
    return client.create_group(Name=name, InitialVersion=initial_version)


@aws_call("delete group")
def delete_group(client, group_id):
    client.delete_group(GroupId=group_id)


@aws_call("create group version")
def create_group_version(client, group_id, definition):
    return client.create_group_version(GroupId=group_id, **definition)


@aws_call("get group version")
def get_group_version(client, group_id, version_id):
    return client.get_group_version(GroupId=group_id, GroupVersionId=version_id)


@aws_call("list group versions")
def list_group_versions(client, group_id):
    return (
        client.get_paginator("list_group_versions").paginate(GroupId=group_id).build_full_result().get("Versions", [])
    )


@aws_call("get definition", missing=None, missing_codes=MISSING_CODES)
def get_definition(client, kind, definition_id):
    api, id_key, _version_key = _kind_api(kind)
    return getattr(client, "get_%s_definition" % api)(**{id_key: definition_id})


@aws_call("list definitions")
def list_definitions(client, kind):
    api = KINDS[kind]["api"]
    paginator = client.get_paginator("list_%s_definitions" % api)
    return paginator.paginate().build_full_result().get("Definitions", [])


@aws_call("get definition version")
def get_definition_version(client, kind, definition_id, version_id):
    api, id_key, version_key = _kind_api(kind)
    return getattr(client, "get_%s_definition_version" % api)(**{id_key: definition_id, version_key: version_id})


@aws_call("list definition versions")
def list_definition_versions(client, kind, definition_id):
    api, id_key, _version_key = _kind_api(kind)
    paginator = client.get_paginator("list_%s_definition_versions" % api)
    return paginator.paginate(**{id_key: definition_id}).build_full_result().get("Versions", [])


@aws_call("create definition")
def create_definition(client, kind, name, initial_version):
    return getattr(client, "create_%s_definition" % KINDS[kind]["api"])(Name=name, InitialVersion=initial_version)


@aws_call("create definition version")
def create_definition_version(client, kind, definition_id, content):
    api, id_key, _version_key = _kind_api(kind)
    arguments = dict(content)
    arguments[id_key] = definition_id
    return getattr(client, "create_%s_definition_version" % api)(**arguments)


@aws_call("delete definition", missing=None, missing_codes=MISSING_CODES)
def delete_definition(client, kind, definition_id):
    api, id_key, _version_key = _kind_api(kind)
    getattr(client, "delete_%s_definition" % api)(**{id_key: definition_id})


def _is_missing_role(error):
    response = getattr(error, "response", {}) or {}
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NotFoundException", "ResourceNotFoundException", "IdNotFoundException") or status == 404


@aws_call("get associated role")
def get_associated_role_arn(client, group_id):
    """The group's role ARN, or None when the group has no role."""
    try:
        return client.get_associated_role(GroupId=group_id).get("RoleArn")
    except botocore.exceptions.ClientError as error:
        if _is_missing_role(error):
            return None
        raise


@aws_call("associate role")
def associate_role(client, group_id, role_arn):
    client.associate_role_to_group(GroupId=group_id, RoleArn=role_arn)


@aws_call("disassociate role")
def disassociate_role(client, group_id):
    client.disassociate_role_from_group(GroupId=group_id)


@aws_call("list deployments")
def list_deployments(client, group_id):
    return (
        client.get_paginator("list_deployments").paginate(GroupId=group_id).build_full_result().get("Deployments", [])
    )


@aws_call("get deployment status")
def get_deployment_status(client, group_id, deployment_id):
    status = client.get_deployment_status(GroupId=group_id, DeploymentId=deployment_id)
    status.pop("ResponseMetadata", None)
    return status


def create_deployment(client, group_id, version_id, deployment_type="NewDeployment", deployment_id=None):
    """CreateDeployment with one X-Amzn-Client-Token for all its retries: the model says it is idempotent with
    respect to that token and the parameters, so a lost response does not make a second deployment."""
    arguments = {"GroupId": group_id, "GroupVersionId": version_id, "DeploymentType": deployment_type}
    if deployment_id:
        arguments["DeploymentId"] = deployment_id
    arguments["AmznClientToken"] = client_token()
    return _create_deployment(client, arguments)


@aws_call("create deployment")
def _create_deployment(client, arguments):
    result = client.create_deployment(**arguments)
    result.pop("ResponseMetadata", None)
    return result


@aws_call("reset deployments")
def reset_deployments(client, group_id, force=True):
    result = client.reset_deployments(GroupId=group_id, Force=force)
    result.pop("ResponseMetadata", None)
    return result


# ---------------------------------------------------------------------------------------------
# Composite reads shared by the modules


def group_summary(group):
    if not group:
        return {}
    return {
        "id": group.get("Id"),
        "arn": group.get("Arn"),
        "name": group.get("Name"),
        "latest_version": group.get("LatestVersion"),
        "latest_version_arn": group.get("LatestVersionArn"),
    }


def find_group(client, name=None, group_id=None):
    """The group by id, or by name (None when absent); GreengrassInputError when several share the name."""
    if group_id:
        return get_group(client, group_id)
    matches = find_groups_by_name(client, name)
    if len(matches) > 1:
        raise _several_groups_error(name, matches)
    return matches[0] if matches else None


def _several_groups_error(name, matches):
    return GreengrassInputError(
        [
            "%d Greengrass groups are named %r (ids: %s); rename or delete the extras, or address one by group_id"
            % (len(matches), name, ", ".join(sorted(group["Id"] for group in matches)))
        ]
    )


def group_and_lost_create_duplicates(client, name):
    """(the group named ``name`` or None, [the other groups of that name that only a retried CreateGroup made]).

    When several groups share the name and all but one were never deployed and hold exactly that one's latest
    version, they are what a run killed after a lost-and-retried CreateGroup left (see duplicates_of_created_group):
    the deployed group is kept, else the oldest. Any other mix raises GreengrassInputError, as find_group does."""
    matches = find_groups_by_name(client, name)
    if len(matches) <= 1:
        return (matches[0] if matches else None), []
    described = [
        (group, current_group_definition(client, group), bool(list_deployments(client, group["Id"])))
        for group in matches
    ]
    deployed = [entry for entry in described if entry[2]]
    if len(deployed) > 1:
        raise _several_groups_error(name, matches)
    kept = deployed[0] if deployed else min(described, key=lambda entry: str(entry[0].get("CreationTimestamp") or ""))
    duplicates = [
        group for group, definition, _deployed in described if group["Id"] != kept[0]["Id"] and definition == kept[1]
    ]
    if len(duplicates) != len(matches) - 1:
        raise _several_groups_error(name, matches)
    return kept[0], duplicates


def current_group_definition(client, group):
    """The latest group version's {<Kind>DefinitionVersionArn: arn}, {} when the group has no version."""
    if not group or not group.get("LatestVersion"):
        return {}
    return get_group_version(client, group["Id"], group["LatestVersion"]).get("Definition", {}) or {}


def duplicates_of_created_group(client, group, definition):
    """Other groups with the name of ``group`` (just created from ``definition``) whose latest version is exactly
    ``definition`` and that were never deployed: made by a CreateGroup that a client retried after its answer was
    lost. Greengrass V1 documents idempotency for CreateDeployment only (API reference, CreateDeployment:
    "idempotent with respect to the X-Amzn-Client-Token"); for CreateGroup the token only "correlates requests
    and responses", so a retry makes a second group."""
    duplicates = []
    for other in find_groups_by_name(client, group["Name"]):
        if other["Id"] == group["Id"] or current_group_definition(client, other) != definition:
            continue
        if not list_deployments(client, other["Id"]):
            duplicates.append(other)
    return duplicates


def owned_definition(client, kind, group_name, version_arn):
    """The definition behind ``version_arn`` with its latest content, when it is this group's (by name), else None."""
    definition_id, _version = definition_id_from_version_arn(version_arn)
    if not definition_id:
        return None
    definition = get_definition(client, kind, definition_id)
    if not definition or definition.get("Name") != definition_name(group_name, kind):
        return None
    latest = {}
    if definition.get("LatestVersion"):
        latest = get_definition_version(client, kind, definition_id, definition["LatestVersion"])
    return {
        "id": definition_id,
        "name": definition.get("Name"),
        "latest_version": definition.get("LatestVersion"),
        "latest_version_arn": definition.get("LatestVersionArn"),
        "content": latest.get("Definition", {}) or {},
    }


def unclaimed_definitions(client, kind, group_name, claimed_ids):
    """Definitions named after the group that no version of it uses (``claimed_ids``), newest first, each as
    ``owned_definition`` describes one: what a run interrupted between creating definitions and the group version
    that uses them (or a create retried after its response was lost) leaves behind."""
    name = definition_name(group_name, kind)
    found = [d for d in list_definitions(client, kind) if d.get("Name") == name and d.get("Id") not in claimed_ids]
    found.sort(key=lambda d: d.get("CreationTimestamp") or "", reverse=True)
    return [
        owned_definition(client, kind, group_name, d["LatestVersionArn"]) for d in found if d.get("LatestVersionArn")
    ]


def snake_content(value):
    """A definition's content with Ansible-style keys; environment variable names are kept as they are."""
    if isinstance(value, dict):
        converted = {}
        for key, item in value.items():
            snake_key = list(camel_dict_to_snake_dict({key: None}).keys())[0]
            converted[snake_key] = dict(item) if key == "Variables" and isinstance(item, dict) else snake_content(item)
        return converted
    if isinstance(value, list):
        return [snake_content(item) for item in value]
    return value


def describe_group_version(client, group_id, version_id):
    """{kind: {definition_id, definition_name, version, version_arn, version_count, content}} per kind used."""
    definition = get_group_version(client, group_id, version_id).get("Definition", {}) or {}
    resolved = {}
    for kind in KIND_ORDER:
        arn = definition.get(KINDS[kind]["group_key"])
        if not arn:
            continue
        definition_id, definition_version = definition_id_from_version_arn(arn)
        found = get_definition(client, kind, definition_id) or {}
        content = get_definition_version(client, kind, definition_id, definition_version).get("Definition", {}) or {}
        resolved[kind] = {
            "definition_id": definition_id,
            "definition_name": found.get("Name"),
            "version": definition_version,
            "version_arn": arn,
            "version_count": len(list_definition_versions(client, kind, definition_id)),
            "content": snake_content(content),
        }
    return resolved


def describe_deployments(client, group_id):
    """Newest first, each with the group version it deployed."""
    return [
        {
            "id": deployment.get("DeploymentId"),
            "arn": deployment.get("DeploymentArn"),
            "type": deployment.get("DeploymentType"),
            "created_at": deployment.get("CreatedAt"),
            "group_version_id": deployment_version_id(deployment),
        }
        for deployment in sort_deployments(list_deployments(client, group_id))
    ]
