"""The Greengrass V2 data plane of the test bed: what a core device calls with its certificate.

Test equipment, served by ``https.py`` on the host ``greengrass-ats.iot.<region>.amazonaws.com`` (AWS serves it
there on port 8443). Operations and shapes from botocore's ``greengrassv2`` service model (2020-11-30) and the
Greengrass V2 API reference; each request is authenticated with the device certificate and authorized by the
policies attached to it (device-auth.md, "AWS IoT Greengrass V2 policy actions"):

- ``ResolveComponentCandidates`` (POST /greengrass/v2/resolveComponentCandidates): needs
  ``greengrass:ResolveComponentCandidates`` (evaluated on resource ``*``, as AWS's minimal policy grants it).
  For each candidate, the component version the deployment names if it exists and satisfies every
  ``versionRequirements`` range (npm-style: ``=``, ``>``, ``>=``, ``<``, ``<=``, ``^``, ``~``, ``x``/``*``, space
  for AND, ``||`` for OR), else the newest version that does; its recipe must have a manifest for the
  device's platform (``os`` and ``architecture`` attributes; ``*`` or absent matches any). A component that
  does not exist, or has no version for the platform, is ResourceNotFoundException; requirements no version
  meets are ConflictException ("If the requirements conflict, then this operation returns an error"). The
  API reference: "you must use the data plane API endpoint and authenticate with an IoT device certificate"
  - the control-plane emulation has no such route.
- ``GetComponentVersionArtifact`` (GET /greengrass/v2/components/<arn>/artifacts/<name>): needs
  ``greengrass:GetComponentVersionArtifact`` on the component version ARN; AWS serves "a public or a Lambda
  component artifact" only. The bed has neither (no public catalog, no Lambda components), so every
  authorized request gets ResourceNotFoundException; a core downloads its private components' ``s3://``
  artifacts from S3 with token-exchange credentials, as on AWS.

NOT emulated: ``GetDeploymentConfiguration`` and ``ListThingGroupsForCoreDevice`` (in the nucleus's
``greengrassv2-data`` client, whose service model is not public: requests get 404 naming the path), component
digests compared with the device's, dependency resolution across components (each candidate is resolved on
its own), vendor guidance other than ACTIVE, throttling.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import unquote

from testbed.iot_data_plane.registry import LOG

GREENGRASS_HOST = re.compile(r"^greengrass-ats\.iot\.([a-z0-9-]+)\.amazonaws\.com$")
RESOLVE_PATH = re.compile(r"^/greengrass/v2/resolveComponentCandidates$")
ARTIFACT_PATH = re.compile(r"^/greengrass/v2/components/([^/]+)/artifacts/(.+)$")
_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_COMPARATOR = re.compile(r"^(\^|~|>=|<=|>|<|=)?v?(\d+|x|X|\*)(?:\.(\d+|x|X|\*))?(?:\.(\d+|x|X|\*))?(-[0-9A-Za-z.-]+)?$")


class DataPlaneError(Exception):
    STATUS = {"ValidationException": 400, "AccessDeniedException": 403, "ResourceNotFoundException": 404,
              "ConflictException": 409}  # fmt: skip

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code

    def answer(self) -> tuple[int, dict]:
        return self.STATUS[self.code], {"message": str(self), "__type": self.code}


def parse_version(text: str) -> tuple:
    match = _VERSION.match(text or "")
    if not match:
        raise ValueError("%r is not a semantic version" % text)
    major, minor, patch, pre = match.groups()
    return (int(major), int(minor), int(patch), () if pre is None else tuple(pre.split(".")))


def _before(a: tuple, b: tuple) -> bool:
    """Semantic-version order: a pre-release sorts before its release."""
    if a[:3] != b[:3]:
        return a[:3] < b[:3]
    if a[3] == b[3]:
        return False
    if not a[3] or not b[3]:
        return bool(a[3])
    return a[3] < b[3]


def _comparators(term: str) -> list[tuple[str, tuple]]:
    """npm-style comparator -> [(op, version)] with op in <, <=, >, >=, =."""
    match = _COMPARATOR.match(term)
    if not match:
        raise ValueError("%r is not a version requirement" % term)
    op, *parts, pre = match.groups()
    wild = [p is None or p in ("x", "X", "*") for p in parts]
    numbers = [0 if w else int(p) for p, w in zip(parts, wild, strict=True)]
    pre_tuple = tuple(pre[1:].split(".")) if pre else ()
    base = (*numbers, pre_tuple)
    if wild[0]:
        return []  # "*" / "x": any version
    if op in (None, "=") and (wild[1] or wild[2]):
        op = "~" if not wild[1] else "^"
    if op == "^":
        upper = (numbers[0] + 1, 0, 0, ("0",)) if numbers[0] else (0, numbers[1] + 1, 0, ("0",))
        return [(">=", base), ("<", upper)]
    if op == "~":
        upper = (numbers[0], numbers[1] + 1, 0, ("0",)) if not wild[1] else (numbers[0] + 1, 0, 0, ("0",))
        return [(">=", base), ("<", upper)]
    return [(op or "=", base)]


def satisfies(version: str, requirement: str) -> bool:
    """Does version meet an npm-style range (what the nucleus sends in versionRequirements)?"""
    candidate = parse_version(version)
    for alternative in requirement.split("||"):
        terms = alternative.split()
        checks = [c for term in terms for c in _comparators(term)] if terms else []
        if all(_holds(candidate, op, bound) for op, bound in checks):
            return True
    return False


def _holds(candidate: tuple, op: str, bound: tuple) -> bool:
    if op == "=":
        return candidate == bound
    if op == ">":
        return _before(bound, candidate)
    if op == ">=":
        return not _before(candidate, bound)
    if op == "<":
        return _before(candidate, bound)
    return not _before(bound, candidate)  # <=


def _platform_matches(recipe: dict, platform: dict) -> bool:
    attributes = dict((platform or {}).get("attributes") or {})
    if (platform or {}).get("name") and "os" not in attributes:
        attributes["os"] = platform["name"]
    for manifest in recipe.get("Manifests") or [{}]:
        wanted = (manifest or {}).get("Platform") or {}
        if all(
            str(wanted.get(key, "*")) in ("*", "", str(attributes.get(key, "")))
            for key in ("os", "architecture")
            if key in wanted
        ):
            return True
    return False


class GreengrassDataPlane:
    def __init__(self, registry, components):
        """components: the Greengrass V2 emulation (its component versions and lock)."""
        self.registry = registry
        self.components = components

    def _authorize(self, principal, action: str, resource: str) -> None:
        decision = self.registry.authorize(principal, None, action, resource)
        if not decision.allowed:
            raise DataPlaneError("AccessDeniedException", "%s: %s" % (action, decision.reason))

    def resolve(self, principal, match, headers, body) -> tuple[int, dict]:
        try:
            self._authorize(principal, "greengrass:ResolveComponentCandidates", "*")
            request = json.loads(body or b"{}")
            candidates = request.get("componentCandidates")
            if not isinstance(candidates, list) or not candidates:
                raise DataPlaneError("ValidationException", "componentCandidates must be a non-empty list")
            with self.components.lock:
                resolved = [self._resolve_one(principal.region, c, request.get("platform") or {}) for c in candidates]
        except DataPlaneError as error:
            LOG.info("greengrass data plane: %s %s", error.code, error)
            return error.answer()
        except (ValueError, AttributeError) as error:
            return DataPlaneError("ValidationException", "Malformed request: %s" % error).answer()
        return 200, {"resolvedComponentVersions": resolved}

    def _resolve_one(self, region: str, candidate: dict, platform: dict) -> dict:
        name = candidate.get("componentName")
        requirements = candidate.get("versionRequirements") or {}
        versions = self.components.component_versions(region, name)
        if not versions:
            raise DataPlaneError("ResourceNotFoundException", "Component %s does not exist" % name)
        meeting = [v for v in versions if all(satisfies(v["componentVersion"], r) for r in requirements.values())]
        if not meeting:
            raise DataPlaneError(
                "ConflictException", "No version of %s meets the requirements %s" % (name, json.dumps(requirements))
            )
        for_platform = [v for v in meeting if _platform_matches(v["recipe"], platform)]
        if not for_platform:
            raise DataPlaneError(
                "ResourceNotFoundException", "No version of %s has a manifest for the platform %s" % (name, platform)
            )
        asked = [v for v in for_platform if v["componentVersion"] == candidate.get("componentVersion")]
        chosen = asked[0] if asked else for_platform[0]  # the catalog lists the newest version first
        return {
            "arn": chosen["arn"],
            "componentName": name,
            "componentVersion": chosen["componentVersion"],
            "recipe": base64.b64encode(json.dumps(chosen["recipe"]).encode()).decode("ascii"),
            "vendorGuidance": "ACTIVE",
            "message": "",
        }

    def artifact(self, principal, match, headers, body) -> tuple[int, dict]:
        arn, name = unquote(match.group(1)), unquote(match.group(2))
        try:
            self._authorize(principal, "greengrass:GetComponentVersionArtifact", arn)
            raise DataPlaneError(
                "ResourceNotFoundException",
                "Artifact %s of %s: the test bed has no public or Lambda components (private artifacts are "
                "downloaded from S3 with token-exchange credentials)" % (name, arn),
            )
        except DataPlaneError as error:
            LOG.info("greengrass data plane: %s %s", error.code, error)
            return error.answer()
