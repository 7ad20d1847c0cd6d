"""What the stand-in nucleus does with a component recipe: the parts that need no device (TEST EQUIPMENT).

Standard library only, Python 3.8+: this file runs on simulated devices under the stand-in nucleus
(``nucleus_agent.py``) and is unit-tested on the controller. Each rule names the page of the AWS IoT
Greengrass V2 developer guide (awsdocs/aws-iot-greengrass-v2-developer-guide, doc_source/) it follows.
Anything of a recipe this file does not implement raises ``Unsupported`` naming it, so a deployment that
needs it fails with that name instead of half-running.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import hashlib
import hmac
import json
import re
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote, urlsplit

try:  # on the device the IPC stand-in is a module beside this one (lib/agent/)
    from greengrass_ipc_server import topic_matches
except ImportError:  # on the controller (unit tests)
    from testbed.standins.greengrass_ipc.server import topic_matches


class Unsupported(Exception):
    """Something in a recipe or deployment that the stand-in does not implement (never silently skipped)."""


class RecipeError(Exception):
    """A recipe the real nucleus would also refuse (component-recipe-reference.md)."""


# component-recipe-reference.md: the recipe keys; the stand-in implements these and refuses the others.
RECIPE_KEYS = {
    "RecipeFormatVersion",
    "ComponentName",
    "ComponentVersion",
    "ComponentDescription",
    "ComponentPublisher",
    "ComponentType",
    "ComponentDependencies",
    "ComponentConfiguration",
    "Manifests",
}
MANIFEST_KEYS = {"Platform", "Lifecycle", "Artifacts", "Name"}
ARTIFACT_KEYS = {"URI", "Unarchive", "Permission", "Digest", "Algorithm"}
# Lifecycle steps the stand-in runs; Startup, Recover, Bootstrap, SkipIf... are refused by name.
LIFECYCLE_STEPS = {"Setenv", "Install", "Run", "Shutdown"}
STEP_KEYS = {"Script", "RequiresPrivilege", "Timeout", "Setenv"}
# component-recipe-reference.md, Lifecycle: Install and Shutdown time out after 120 s and 15 s by default.
DEFAULT_TIMEOUTS = {"Install": 120, "Shutdown": 15}

# component-recipe-reference.md, "Recipe variables": {namespace:key} for this component and
# {component:namespace:key} for a dependency's artifacts, work folder and configuration.
VARIABLE = re.compile(r"\{(?:([A-Za-z0-9._-]+):)?(artifacts|work|configuration|kernel|iot):([^{}\s]*)\}")


def parse_version(text: str) -> Tuple[int, int, int]:
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)", str(text))
    if not match:
        raise RecipeError("version %r is not semantic (major.minor.patch)" % text)
    return tuple(int(part) for part in match.groups())  # type: ignore[return-value]


def satisfies(version: str, requirement: str) -> bool:
    """npm-style requirements as recipes use them (component-recipe-reference.md, ComponentDependencies):
    space-separated comparators (=, >=, >, <=, <) and ^/~ ranges."""
    have = parse_version(version)
    for term in str(requirement).split():
        match = re.match(r"^(\^|~|>=|<=|>|<|=)?v?(\d+\.\d+\.\d+)$", term)
        if not match:
            raise Unsupported("version requirement %r (the stand-in takes =, >=, >, <=, <, ^ and ~)" % requirement)
        operator, want = match.group(1) or "=", parse_version(match.group(2))
        if operator == "^":
            upper = (want[0] + 1, 0, 0) if want[0] else (0, want[1] + 1, 0)
            ok = want <= have < upper
        elif operator == "~":
            ok = want <= have < (want[0], want[1] + 1, 0)
        else:
            ok = {
                "=": have == want,
                ">=": have >= want,
                ">": have > want,
                "<=": have <= want,
                "<": have < want,
            }[operator]
        if not ok:
            return False
    return True


def check_recipe(recipe: dict) -> None:
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise Unsupported("recipe key(s) %s" % ", ".join(unknown))
    if recipe.get("ComponentType", "aws.greengrass.generic") != "aws.greengrass.generic":
        raise Unsupported("ComponentType %s (the stand-in runs generic components only)" % recipe["ComponentType"])
    configuration = recipe.get("ComponentConfiguration") or {}
    unknown = sorted(set(configuration) - {"DefaultConfiguration"})
    if unknown:
        raise Unsupported("ComponentConfiguration key(s) %s" % ", ".join(unknown))


def select_manifest(recipe: dict, platform: Dict[str, str]) -> dict:
    """The first manifest whose Platform matches this device (component-recipe-reference.md, Manifests;
    ``*`` and a missing key match any value); none: the component cannot run here."""
    for manifest in recipe.get("Manifests") or []:
        unknown = sorted(set(manifest) - MANIFEST_KEYS)
        if unknown:
            raise Unsupported("manifest key(s) %s of %s" % (", ".join(unknown), recipe.get("ComponentName")))
        wanted = manifest.get("Platform") or {}
        extra = sorted(set(wanted) - {"os", "architecture"})
        if extra:
            raise Unsupported("platform attribute(s) %s of %s" % (", ".join(extra), recipe.get("ComponentName")))
        if all(
            str(wanted[key]) in ("*", platform.get(key)) or (key == "os" and wanted[key] == "all") for key in wanted
        ):
            return manifest
    raise RecipeError("%s has no manifest for the platform %s" % (recipe.get("ComponentName"), json.dumps(platform)))


def lifecycle_of(manifest: dict, component: str) -> Dict[str, dict]:
    """{step: {Script, RequiresPrivilege, Timeout, Setenv}} plus "Setenv" for the whole lifecycle."""
    lifecycle = manifest.get("Lifecycle") or {}
    unknown = sorted(set(lifecycle) - LIFECYCLE_STEPS)
    if unknown:
        raise Unsupported("lifecycle step(s) %s of %s" % (", ".join(unknown), component))
    steps = {"Setenv": dict(lifecycle.get("Setenv") or {})}
    for name in ("Install", "Run", "Shutdown"):
        step = lifecycle.get(name)
        if step is None:
            continue
        step = {"Script": step} if isinstance(step, str) else dict(step)
        unknown = sorted(set(step) - STEP_KEYS)
        if unknown:
            raise Unsupported("%s key(s) %s of %s" % (name, ", ".join(unknown), component))
        if not isinstance(step.get("Script"), str):
            raise RecipeError("%s.Script of %s must be a string" % (name, component))
        if name == "Run" and "Timeout" in step:
            raise Unsupported("Run.Timeout of %s" % component)
        step.setdefault("Timeout", DEFAULT_TIMEOUTS.get(name))
        steps[name] = step
    return steps


def artifact_file_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def check_artifact(artifact: dict, component: str) -> None:
    unknown = sorted(set(artifact) - ARTIFACT_KEYS)
    if unknown:
        raise Unsupported("artifact key(s) %s of %s" % (", ".join(unknown), component))
    uri = artifact.get("URI", "")
    if not uri.startswith("s3://"):
        raise Unsupported("artifact URI %s of %s (the stand-in downloads s3:// artifacts only)" % (uri, component))
    if artifact.get("Unarchive", "NONE") not in ("NONE", "ZIP"):
        raise RecipeError("Unarchive %s of %s: Greengrass unarchives ZIP only" % (artifact["Unarchive"], component))


def verify_digest(artifact: dict, content: bytes) -> None:
    """component-recipe-reference.md, Artifacts: Digest is the base64 of the hash named by Algorithm, which
    the service computes when the component is created; a mismatch fails the download."""
    digest, algorithm = artifact.get("Digest"), artifact.get("Algorithm", "SHA-256")
    if digest is None:
        return
    names = {"SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
    if algorithm not in names:
        raise Unsupported("digest algorithm %s" % algorithm)
    actual = base64.b64encode(hashlib.new(names[algorithm], content).digest()).decode("ascii")
    if actual != digest:
        raise RecipeError(
            "artifact %s: %s digest %s, the recipe says %s" % (artifact["URI"], algorithm, actual, digest)
        )


def permission_mode(artifact: dict) -> int:
    """component-recipe-reference.md, Permission: Read defaults to OWNER, Execute to NONE."""
    permission = artifact.get("Permission") or {}
    mode = 0
    for key, bit, default in (("Read", 0o4, "OWNER"), ("Execute", 0o1, "NONE")):
        value = permission.get(key, default)
        if value not in ("NONE", "OWNER", "ALL"):
            raise RecipeError("Permission.%s %r: NONE, OWNER or ALL" % (key, value))
        if value in ("OWNER", "ALL"):
            mode |= bit << 6
        if value == "ALL":
            mode |= bit << 3 | bit
    return mode


def json_pointer(document: Any, pointer: str) -> Any:
    """A configuration value by JSON pointer (component-recipe-reference.md, ``{configuration:/path}``)."""
    if pointer in ("", "/"):
        return document
    if not pointer.startswith("/"):
        raise RecipeError("configuration key %r must be a JSON pointer starting with /" % pointer)
    value = document
    for part in pointer[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def interpolate(text: str, own: str, paths: Dict[str, Dict[str, Any]], kernel: Dict[str, str], dependencies) -> str:
    """Replace recipe variables. ``paths[component]`` holds ``artifacts:path``, ``artifacts:decompressedPath``,
    ``work:path`` and ``configuration``; a component prefix is allowed for dependencies only. A variable the
    stand-in cannot resolve raises, naming it."""

    def value(match) -> str:
        component, namespace, key = match.group(1), match.group(2), match.group(3)
        if namespace in ("kernel", "iot"):
            if component:
                raise RecipeError("%s: %s variables take no component name" % (match.group(0), namespace))
            name = namespace + ":" + key
            if name not in kernel:
                raise Unsupported("recipe variable %s" % match.group(0))
            return kernel[name]
        target = component or own
        if component and component != own and component not in dependencies:
            raise RecipeError("%s: %s is not a dependency of %s" % (match.group(0), component, own))
        if target not in paths:
            raise RecipeError("%s: component %s is not in this deployment" % (match.group(0), target))
        if namespace == "configuration":
            found = json_pointer(paths[target]["configuration"], key)
            if found is None:
                return ""
            return found if isinstance(found, str) else json.dumps(found)
        name = namespace + ":" + key
        if name not in paths[target]:
            raise Unsupported("recipe variable %s" % match.group(0))
        return str(paths[target][name])

    return VARIABLE.sub(value, text)


def merge_configuration(default: Any, update: Optional[dict]) -> Any:
    """A deployment's configurationUpdate (update-component-configurations.md): ``reset`` JSON pointers back to
    the default, then ``merge`` (a JSON document) on top."""
    configuration = json.loads(json.dumps(default or {}))
    if not update:
        return configuration
    unknown = sorted(set(update) - {"merge", "reset"})
    if unknown:
        raise Unsupported("configurationUpdate key(s) %s" % ", ".join(unknown))
    for pointer in update.get("reset") or []:
        if pointer not in ("", "/"):
            raise Unsupported("configurationUpdate reset of %s (the stand-in resets all or nothing)" % pointer)
        configuration = json.loads(json.dumps(default or {}))
    merge = update.get("merge")
    if merge:
        merge = json.loads(merge) if isinstance(merge, str) else merge

        def deep(into: dict, top: dict) -> dict:
            for key, item in top.items():
                nested = isinstance(item, dict) and isinstance(into.get(key), dict)
                into[key] = deep(into[key], item) if nested else item
            return into

        configuration = deep(configuration, merge)
    return configuration


# --- IPC authorization (interprocess-communication.md#ipc-authorization-policies, ipc-iot-core-mqtt.md)

MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"


def resource_allows(resource: str, topic: str) -> bool:
    """ipc-iot-core-mqtt.md: a resource is a topic string, ``*`` for every topic, and "supports MQTT topic
    wildcards (# and +)"; the nucleus also takes ``*`` inside a resource as a glob (the page's policies and
    interprocess-communication.md's wildcard section). A subscription's filter must be the resource itself or
    lie inside it."""
    if resource == "*" or resource == topic:
        return True
    if "*" in resource and fnmatch.fnmatchcase(topic, resource):
        return True
    return ("#" in resource or "+" in resource) and topic_matches(resource, topic)


def ipc_allowed(access_control: dict, operation: str, topic: str) -> Tuple[bool, str]:
    """Whether the component's accessControl lets it run ``operation`` on ``topic``; default deny."""
    policies = (access_control or {}).get(MQTT_PROXY) or {}
    for policy_id, policy in sorted(policies.items()):
        if not isinstance(policy, dict):
            continue
        operations = policy.get("operations") or []
        if operation not in operations and "*" not in operations:
            continue
        if any(resource_allows(str(resource), topic) for resource in policy.get("resources") or []):
            return True, policy_id
    return False, "no %s policy of the component allows %s on %s" % (MQTT_PROXY, operation, topic)


# --- Signature Version 4 for the artifact downloads (AWS General Reference, sigv4-create-canonical-request)


def sigv4_headers(
    method: str, url: str, credentials: dict, region: str, service: str = "s3", now: Optional[datetime.datetime] = None
) -> Dict[str, str]:
    """Headers of a SigV4-signed request with an empty body (a GET of an S3 object), with the session token
    of token-exchange credentials; ``url``'s path must already be URI-encoded (``s3_object_url``). Checked
    against botocore's signer in the unit tests."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    parts = urlsplit(url)
    payload_hash = hashlib.sha256(b"").hexdigest()
    headers = {
        "host": parts.netloc,
        "x-amz-content-sha256": payload_hash,
        "x-amz-date": amz_date,
    }
    if credentials.get("sessionToken"):
        headers["x-amz-security-token"] = credentials["sessionToken"]
    signed = sorted(headers)
    query = "&".join(
        "%s=%s" % (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in sorted(tuple(p.split("=", 1) + [""])[:2] for p in parts.query.split("&") if p)
    )
    canonical = "\n".join(
        # S3's canonical URI is the path as sent, each segment URI-encoded once (the caller's job), not re-encoded.
        [method, parts.path or "/", query]
        + ["%s:%s" % (name, headers[name].strip()) for name in signed]
        + ["", ";".join(signed), payload_hash]
    )
    scope = "%s/%s/%s/aws4_request" % (day, region, service)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + credentials["secretAccessKey"]).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        credentials["accessKeyId"],
        scope,
        ";".join(signed),
        signature,
    )
    del headers["host"]
    return headers


def s3_object_url(endpoint: str, uri: str) -> str:
    """Path-style URL of an ``s3://bucket/key`` artifact at an S3 endpoint, the key URI-encoded once."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    return "%s/%s/%s" % (endpoint.rstrip("/"), bucket, quote(key, safe="/-_.~"))


def dependency_order(recipes: Dict[str, dict]) -> List[str]:
    """Components ordered so that each comes after its dependencies in the deployment
    (component-recipe-reference.md, ComponentDependencies); a cycle is refused."""
    order, visiting = [], set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise RecipeError("dependency cycle through %s" % name)
        visiting.add(name)
        for dependency in sorted((recipes[name].get("ComponentDependencies") or {})):
            if dependency in recipes:
                visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in sorted(recipes):
        visit(name)
    return order


def check_dependencies(recipes: Dict[str, dict]) -> None:
    """Every HARD dependency must be in the deployment at a version meeting its requirement (the cloud resolves
    dependencies the deployment does not list; the stand-in does not: it refuses them by name)."""
    for name, recipe in recipes.items():
        for dependency, spec in (recipe.get("ComponentDependencies") or {}).items():
            spec = spec or {}
            if dependency not in recipes:
                if spec.get("DependencyType", "HARD") == "SOFT":
                    continue
                raise Unsupported(
                    "dependency %s of %s is not in the deployment (the stand-in resolves no "
                    "dependencies the deployment does not list)" % (dependency, name)
                )
            requirement = spec.get("VersionRequirement")
            have = recipes[dependency]["ComponentVersion"]
            if requirement and not satisfies(have, requirement):
                raise RecipeError("%s %s does not meet %s's requirement %s" % (dependency, have, name, requirement))
