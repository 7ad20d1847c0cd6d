# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Private helpers for this collection's AWS IoT modules.

Two halves: small AWS IoT calls (each retried with jittered backoff, lists
through paginators), and pure planning/validation functions that decide what
a module should do. The pure half has no AWS dependency and is unit-tested.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

from ansible.module_utils.six.moves.urllib.parse import quote
from ansible_collections.amazon.aws.plugins.module_utils.policy import compare_policies
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, aws_call

THING_NAME_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
THING_GROUP_NAME_RE = THING_NAME_RE
POLICY_NAME_RE = re.compile(r"^[\w+=,.@-]{1,128}$")
ROLE_ALIAS_RE = re.compile(r"^[\w=,@-]{1,128}$")
ATTRIBUTE_NAME_RE = re.compile(r"^[a-zA-Z0-9_.,@/:#-]{1,128}$")
ATTRIBUTE_VALUE_RE = re.compile(r"^[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}$")
GROUP_ID_RE = re.compile(r"^[a-zA-Z0-9-]{1,128}$")

# The Greengrass data-plane actions a V2 core's nucleus calls (AWS's minimal V2 core policy, device-auth page):
# resolve and download components, fetch large deployment documents (nucleus 2.3+), read its thing groups (2.5+).
GREENGRASS_V2_CORE_DATA_PLANE_ACTIONS = (
    "greengrass:GetComponentVersionArtifact",
    "greengrass:ResolveComponentCandidates",
    "greengrass:GetDeploymentConfiguration",
    "greengrass:ListThingGroupsForCoreDevice",
)

# AWS IoT keeps at most five versions of a policy; a sixth needs an old one deleted first.
MAX_POLICY_VERSIONS = 5
POLICY_NAME_SUFFIX = "-policy"


class InputError(ValueError):
    """A module input is wrong; the message names the input and what was expected."""


# ---------------------------------------------------------------------------
# AWS IoT calls
# ---------------------------------------------------------------------------


@aws_call("get caller identity (STS)")
def caller_identity(sts_client):
    """(partition, account) of the credentials in use; an STS error fails like the IoT calls, naming the call."""
    identity = sts_client.get_caller_identity()
    return identity["Arn"].split(":")[1], identity["Account"]


@aws_call("describe thing", missing=None)
def describe_thing(client, thing_name):
    return client.describe_thing(thingName=thing_name)


@aws_call("create thing")
def create_thing(client, thing_name, attributes):
    kwargs = {"thingName": thing_name}
    if attributes:
        kwargs["attributePayload"] = {"attributes": attributes}
    return client.create_thing(**kwargs)


@aws_call("update thing attributes")
def merge_thing_attributes(client, thing_name, attributes):
    client.update_thing(thingName=thing_name, attributePayload={"attributes": attributes, "merge": True})


@aws_call("delete thing", missing=False)
def delete_thing(client, thing_name):
    client.delete_thing(thingName=thing_name)
    return True


@aws_call("list thing groups for thing", missing=[])
def list_thing_groups_for_thing(client, thing_name):
    paginator = client.get_paginator("list_thing_groups_for_thing")
    return [g["groupName"] for g in paginator.paginate(thingName=thing_name).build_full_result()["thingGroups"]]


@aws_call("describe thing group", missing=None)
def describe_thing_group(client, group_name):
    return client.describe_thing_group(thingGroupName=group_name)


@aws_call("create thing group")
def _create_thing_group(client, group_name):
    return client.create_thing_group(thingGroupName=group_name)


def error_code(error):
    """The AWS error code behind an AWSCallError, or None."""
    return (getattr(error.exception, "response", None) or {}).get("Error", {}).get("Code")


def create_thing_group(client, group_name):
    """Create the group; one made meanwhile by another device of the same run is the group we wanted."""
    try:
        return _create_thing_group(client, group_name)
    except AWSCallError as error:
        if error_code(error) == "ResourceAlreadyExistsException":
            return describe_thing_group(client, group_name)
        raise


@aws_call("list things", missing=[])
def list_things(client):
    """Every thing of the account and region (name, ARN, type, attributes), in pages of the most AWS gives."""
    paginator = client.get_paginator("list_things")
    return paginator.paginate(maxResults=250).build_full_result()["things"]


@aws_call("list things in thing group", missing=[])
def list_things_in_thing_group(client, group_name):
    paginator = client.get_paginator("list_things_in_thing_group")
    return paginator.paginate(thingGroupName=group_name).build_full_result()["things"]


@aws_call("list child thing groups", missing=[])
def list_child_thing_groups(client, group_name):
    paginator = client.get_paginator("list_thing_groups")
    result = paginator.paginate(parentGroup=group_name, recursive=False).build_full_result()
    return [g["groupName"] for g in result["thingGroups"]]


@aws_call("delete thing group", missing=False)
def delete_thing_group(client, group_name):
    # A group already gone (ResourceNotFoundException) counts as deleted: the handler returns False for it.
    client.delete_thing_group(thingGroupName=group_name)


@aws_call("add thing to thing group")
def add_thing_to_thing_group(client, thing_name, group_name):
    client.add_thing_to_thing_group(thingName=thing_name, thingGroupName=group_name)


@aws_call("remove thing from thing group")
def remove_thing_from_thing_group(client, thing_name, group_name):
    client.remove_thing_from_thing_group(thingName=thing_name, thingGroupName=group_name)


@aws_call("list thing principals", missing=[])
def list_thing_principals(client, thing_name):
    paginator = client.get_paginator("list_thing_principals")
    return paginator.paginate(thingName=thing_name).build_full_result()["principals"]


@aws_call("list principal things", missing=[])
def list_principal_things(client, principal):
    paginator = client.get_paginator("list_principal_things")
    return paginator.paginate(principal=principal).build_full_result()["things"]


@aws_call("attach certificate to thing")
def attach_thing_principal(client, thing_name, principal):
    client.attach_thing_principal(thingName=thing_name, principal=principal)


@aws_call("detach certificate from thing", missing=False)
def detach_thing_principal(client, thing_name, principal):
    client.detach_thing_principal(thingName=thing_name, principal=principal)
    return True


@aws_call("describe certificate", missing=None)
def describe_certificate(client, certificate_id):
    return client.describe_certificate(certificateId=certificate_id)["certificateDescription"]


# Certificates are created INACTIVE and activated only once the policy and the thing are attached: a run
# interrupted in between leaves an INACTIVE certificate (no working credential), which the next run finds by
# its public key and completes instead of issuing another (see iot_device_identity).
@aws_call("create certificate from CSR")
def create_certificate_from_csr(client, csr_pem):
    return client.create_certificate_from_csr(certificateSigningRequest=csr_pem, setAsActive=False)


@aws_call("create keys and certificate")
def create_keys_and_certificate(client):
    return client.create_keys_and_certificate(setAsActive=False)


@aws_call("activate certificate")
def activate_certificate(client, certificate_id):
    client.update_certificate(certificateId=certificate_id, newStatus="ACTIVE")


@aws_call("list certificates", missing=[])
def list_certificates_created_since(client, since):
    """Certificates (id, arn, status, creationDate) created at or after ``since``, newest first.

    ListCertificates pages newest first with ascendingOrder=false (IoT API reference, ListCertificates), so the
    listing stops at the first page that holds only older certificates instead of reading the whole account.
    """
    found = []
    request = {"pageSize": 250, "ascendingOrder": False}
    while True:
        page = client.list_certificates(**request)
        certificates = page.get("certificates", [])
        found.extend(c for c in certificates if c["creationDate"] >= since)
        if not page.get("nextMarker") or (certificates and all(c["creationDate"] < since for c in certificates)):
            return found
        request["marker"] = page["nextMarker"]


@aws_call("deactivate certificate")
def deactivate_certificate(client, certificate_id):
    client.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")


@aws_call("delete certificate", missing=False)
def delete_certificate(client, certificate_id):
    client.delete_certificate(certificateId=certificate_id)
    return True


@aws_call("get policy", missing=None)
def get_policy(client, policy_name):
    return client.get_policy(policyName=policy_name)


@aws_call("create policy")
def _create_policy(client, policy_name, document):
    return client.create_policy(policyName=policy_name, policyDocument=json.dumps(document, sort_keys=True))


def created_or_existing(create, read, is_ours):
    """create(); when AWS answers ResourceAlreadyExistsException, what read() finds if is_ours(it) says it is this
    create's own earlier attempt (its response lost, the call retried), else the error."""
    try:
        return create()
    except AWSCallError as error:
        if error_code(error) == "ResourceAlreadyExistsException":
            existing = read()
            if existing and is_ours(existing):
                return existing
        raise


def create_policy(client, policy_name, document):
    """Create the policy; one of that name with the same document is this create's own retried attempt."""
    return created_or_existing(
        lambda: _create_policy(client, policy_name, document),
        lambda: get_policy(client, policy_name),
        lambda existing: not policy_documents_differ(existing["policyDocument"], document),
    )


@aws_call("list policy versions", missing=[])
def list_policy_versions(client, policy_name):
    # ListPolicyVersions has no paginator: AWS returns all (at most five) versions at once.
    return client.list_policy_versions(policyName=policy_name)["policyVersions"]


@aws_call("create policy version")
def create_policy_version(client, policy_name, document):
    return client.create_policy_version(
        policyName=policy_name, policyDocument=json.dumps(document, sort_keys=True), setAsDefault=True
    )


@aws_call("delete policy version", missing=False)
def delete_policy_version(client, policy_name, version_id):
    client.delete_policy_version(policyName=policy_name, policyVersionId=version_id)
    return True


@aws_call("delete policy", missing=False)
def delete_policy(client, policy_name):
    client.delete_policy(policyName=policy_name)
    return True


@aws_call("list attached policies", missing=[])
def list_attached_policies(client, target):
    paginator = client.get_paginator("list_attached_policies")
    return paginator.paginate(target=target, recursive=False).build_full_result()["policies"]


@aws_call("list targets for policy", missing=[])
def list_targets_for_policy(client, policy_name):
    paginator = client.get_paginator("list_targets_for_policy")
    return paginator.paginate(policyName=policy_name).build_full_result()["targets"]


@aws_call("attach policy")
def attach_policy(client, policy_name, target):
    client.attach_policy(policyName=policy_name, target=target)


@aws_call("detach policy", missing=False)
def detach_policy(client, policy_name, target):
    client.detach_policy(policyName=policy_name, target=target)
    return True


@aws_call("describe endpoint")
def describe_endpoint(client, endpoint_type):
    return client.describe_endpoint(endpointType=endpoint_type)["endpointAddress"]


@aws_call("count account resources")
def count_account_resources(client):
    """How many things, certificates and policies the account has in this region."""
    things = client.get_paginator("list_things").paginate().build_full_result()["things"]
    certificates = client.get_paginator("list_certificates").paginate().build_full_result()["certificates"]
    policies = client.get_paginator("list_policies").paginate().build_full_result()["policies"]
    return {"things": len(things), "certificates": len(certificates), "policies": len(policies)}


@aws_call("describe role alias", missing=None)
def describe_role_alias(client, role_alias):
    return client.describe_role_alias(roleAlias=role_alias)["roleAliasDescription"]


@aws_call("create role alias")
def _create_role_alias(client, role_alias, role_arn, credential_duration_seconds):
    return client.create_role_alias(
        roleAlias=role_alias, roleArn=role_arn, credentialDurationSeconds=credential_duration_seconds
    )


def create_role_alias(client, role_alias, role_arn, credential_duration_seconds):
    """Create the alias; one of that name for the same role and duration is this create's own retried attempt."""
    created = created_or_existing(
        lambda: _create_role_alias(client, role_alias, role_arn, credential_duration_seconds),
        lambda: describe_role_alias(client, role_alias),
        lambda existing: (
            (existing.get("roleArn"), existing.get("credentialDurationSeconds"))
            == (role_arn, credential_duration_seconds)
        ),
    )
    return {"roleAlias": role_alias, "roleAliasArn": created.get("roleAliasArn")}


@aws_call("update role alias")
def update_role_alias(client, role_alias, role_arn, credential_duration_seconds):
    return client.update_role_alias(
        roleAlias=role_alias, roleArn=role_arn, credentialDurationSeconds=credential_duration_seconds
    )


@aws_call("delete role alias", missing=False)
def delete_role_alias(client, role_alias):
    client.delete_role_alias(roleAlias=role_alias)


def describe_endpoints(client):
    """The two endpoints a device needs: MQTT/HTTPS data (ATS-signed) and the credentials provider."""
    return {
        "data": describe_endpoint(client, "iot:Data-ATS"),
        "credentials": describe_endpoint(client, "iot:CredentialProvider"),
    }


def certificate_id_from_arn(arn):
    return arn.rsplit("/", 1)[-1]


def attached_certificates(client, thing_name):
    """Every certificate principal attached to the thing, described (status, pem, dates)."""
    certificates = []
    for principal in list_thing_principals(client, thing_name):
        if ":cert/" not in principal:
            continue
        description = describe_certificate(client, certificate_id_from_arn(principal))
        if description is not None:
            certificates.append(certificate_record(description))
    return certificates


def certificate_record(description):
    """What the modules keep of a DescribeCertificate answer."""
    return {
        "arn": description["certificateArn"],
        "id": description["certificateId"],
        "status": description["status"],
        "pem": description["certificatePem"],
        "creation_date": description.get("creationDate"),
    }


# ---------------------------------------------------------------------------
# Validation (no AWS calls; runs before anything is written)
# ---------------------------------------------------------------------------


def validate_thing_name(value, option="thing_name"):
    if not isinstance(value, str) or not THING_NAME_RE.match(value):
        raise InputError(
            "{0}: {1!r} is not a valid AWS IoT thing name; expected 1 to 128 characters from [a-zA-Z0-9:_-]".format(
                option, value
            )
        )
    return value


def validate_thing_groups(groups):
    for group in groups or []:
        validate_thing_name(group, option="thing_groups")
    return groups


def validate_role_alias_name(value, option="role_alias"):
    if not isinstance(value, str) or not ROLE_ALIAS_RE.match(value):
        raise InputError(
            "{0}: {1!r} is not a valid AWS IoT role alias; expected 1 to 128 characters from [a-zA-Z0-9_=,@-]".format(
                option, value
            )
        )
    return value


def validate_policy_name(value):
    if not isinstance(value, str) or not POLICY_NAME_RE.match(value):
        raise InputError(
            "policy_name: {0!r} is not a valid AWS IoT policy name; expected 1 to 128 characters from "
            "[a-zA-Z0-9_+=,.@-]".format(value)
        )
    return value


def validate_attributes(attributes):
    for name, value in (attributes or {}).items():
        if not ATTRIBUTE_NAME_RE.match(str(name)):
            raise InputError(
                "attributes: name {0!r} is not valid; expected 1 to 128 characters from [a-zA-Z0-9_.,@/:#-]".format(
                    name
                )
            )
        if not isinstance(value, str) or not ATTRIBUTE_VALUE_RE.match(value):
            raise InputError(
                "attributes: value {0!r} of {1!r} is not valid; expected a string of up to 800 characters "
                "from [a-zA-Z0-9_.,@/:#=[]-]".format(value, name)
            )
    return attributes


def validate_topic_prefixes(prefixes):
    """Topic prefixes are literal MQTT topic levels; the policy appends the wildcard itself.

    MQTT wildcards (+, #) are not wildcards in IoT policy resources, and a '*' would widen the
    prefix beyond what was asked, so none of them may appear.
    """
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix.strip():
            raise InputError("topic_prefixes: every prefix must be a non-empty string, got {0!r}".format(prefix))
        for char in ("+", "#", "*", "?"):
            if char in prefix:
                raise InputError(
                    "topic_prefixes: {0!r} contains the wildcard {1!r}; give a literal prefix such as "
                    "'edge/detections/' and the policy adds the wildcard".format(prefix, char)
                )
        if prefix.startswith("$aws/"):
            raise InputError(
                "topic_prefixes: {0!r} is a reserved AWS topic; the thing's own shadow topics are already "
                "allowed by the default policy".format(prefix)
            )
        if "//" in prefix or len(prefix) > 256:
            raise InputError(
                "topic_prefixes: {0!r} is not a valid topic prefix (empty topic level or longer than 256 "
                "characters)".format(prefix)
            )
    return prefixes


def validate_greengrass_group_id(value):
    if value is not None and not GROUP_ID_RE.match(value):
        raise InputError(
            "greengrass_v1_group_id: {0!r} is not a Greengrass group ID; expected letters, digits and "
            "dashes (for example a UUID)".format(value)
        )
    return value


def load_policy_document(value):
    """A user-supplied policy: a dict or JSON text with Version and Statement."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InputError("policy_document: not valid JSON ({0})".format(exc)) from exc
    if not isinstance(value, dict) or "Statement" not in value:
        raise InputError("policy_document: expected a policy object with 'Version' and 'Statement'")
    statements = value["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise InputError("policy_document: 'Statement' must be a non-empty list of statements")
    for statement in statements:
        if not isinstance(statement, dict) or "Effect" not in statement or "Action" not in statement:
            raise InputError(
                "policy_document: every statement needs 'Effect' and 'Action', got {0!r}".format(statement)
            )
    return value


def require_cryptography():
    if not HAS_CRYPTOGRAPHY:
        raise InputError("the Python library 'cryptography' is required on the controller to check CSRs")


def load_csr(csr_pem):
    """Parse and verify a PEM CSR; return the cryptography object."""
    require_cryptography()
    if not isinstance(csr_pem, str) or "-----BEGIN CERTIFICATE REQUEST-----" not in csr_pem:
        raise InputError("csr: expected a PEM certificate signing request ('-----BEGIN CERTIFICATE REQUEST-----')")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.strip().encode("ascii") + b"\n")
    except (ValueError, UnicodeEncodeError) as exc:
        raise InputError("csr: not a parseable PEM certificate signing request ({0})".format(exc)) from exc
    if not csr.is_signature_valid:
        raise InputError("csr: the signature does not match the request's public key (damaged or tampered CSR)")
    return csr


def public_key_der(obj):
    """SubjectPublicKeyInfo DER of a CSR/certificate object or PEM text: what 'same key' means."""
    require_cryptography()
    if isinstance(obj, str):
        obj = x509.load_pem_x509_certificate(obj.encode("ascii"))
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# ---------------------------------------------------------------------------
# Planning (pure)
# ---------------------------------------------------------------------------


def default_policy_name(thing_name):
    return thing_name + POLICY_NAME_SUFFIX


def default_policy_document(
    thing_name,
    partition,
    region,
    account_id,
    topic_prefixes,
    greengrass_v1_core,
    greengrass_v1_group_id=None,
    token_exchange_role_aliases=None,
    greengrass_v2_core=False,
):
    """Least-privilege AWS IoT policy for one thing, scoped to its own client IDs, topics and shadow.

    The Greengrass V1 part follows AWS's "Minimal AWS IoT Policy for the AWS IoT Greengrass Core Device"
    (https://docs.aws.amazon.com/greengrass/v1/developerguide/gg-sec.html#gg-config-sec-min-iot-policy):
    the core connects with client IDs that start with its thing name (it opens more than one connection),
    uses its own shadow and the group CA topics under $aws/things/<core>-gda/, asks greengrass for its
    group role and certificates, reads its group's deployments and reports their status for itself only
    (the last segment of that resource is the URL-encoded ARN of the core's thing, as the page says).
    Without a known group ID the deployment statements cover any group in the account; pass
    greengrass_v1_group_id to pin them.

    The Greengrass V2 part follows AWS's "Minimal AWS IoT policy for AWS IoT Greengrass V2 core devices"
    (https://docs.aws.amazon.com/greengrass/v2/developerguide/device-auth.html#greengrass-core-minimal-iot-policy),
    with the page's "<thing>*" narrowed to this thing: client IDs <thing> and <thing>#* (the nucleus's
    extra MQTT connections add "#<n>" to the thing name), its health telemetry topics, its IoT Jobs topics
    (deployments arrive as jobs), its shadow, and the Greengrass data-plane actions the nucleus calls
    (the page gives them Resource "*"). The nucleus's token exchange needs token_exchange_role_aliases.

    token_exchange_role_aliases: role aliases the device may exchange its certificate for AWS
    credentials with (a Greengrass V2 core's token exchange service); only those aliases.
    """
    iot = "arn:{0}:iot:{1}:{2}:".format(partition, region, account_id)
    thing_arn = iot + "thing/" + thing_name
    things = "$aws/things/{0}/".format(thing_name)
    # Topics the thing may publish to and receive from, and topic filters it may subscribe to.
    pub_receive = [things + "shadow/*"]
    subscribe = [things + "shadow/*"]
    connect = [iot + "client/" + thing_name]
    if greengrass_v1_core:
        # The V1 core's spooler, shadow sync and IPC each hold their own MQTT connection.
        connect.append(iot + "client/" + thing_name + "-*")
        pub_receive.append("$aws/things/{0}-gda/*".format(thing_name))
        subscribe.append("$aws/things/{0}-gda/*".format(thing_name))
    if greengrass_v2_core:
        connect.append(iot + "client/" + thing_name + "#*")
        pub_receive += [things + "greengrass/health/json", things + "greengrassv2/health/json", things + "jobs/*"]
        subscribe.append(things + "jobs/*")
    topics = [p.rstrip("/") + "/*" for p in topic_prefixes]
    statements = [
        {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": connect},
        {
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:Receive"],
            "Resource": [iot + "topic/" + t for t in pub_receive + topics],
        },
        {
            "Effect": "Allow",
            "Action": ["iot:Subscribe"],
            "Resource": [iot + "topicfilter/" + t for t in subscribe + topics],
        },
        {
            "Effect": "Allow",
            "Action": ["iot:GetThingShadow", "iot:UpdateThingShadow", "iot:DeleteThingShadow"],
            "Resource": [thing_arn],
        },
    ]
    if greengrass_v1_core:
        group = greengrass_v1_group_id or "*"
        deployments = "arn:{0}:greengrass:{1}:{2}:/greengrass/groups/{3}/deployments/*".format(
            partition, region, account_id, group
        )
        statements.extend(
            [
                {
                    # Neither action supports resource-level permissions (AWS documents Resource "*").
                    "Effect": "Allow",
                    "Action": ["greengrass:AssumeRoleForGroup", "greengrass:CreateCertificate"],
                    "Resource": ["*"],
                },
                {
                    "Effect": "Allow",
                    "Action": ["greengrass:GetDeployment", "greengrass:GetDeploymentArtifacts"],
                    "Resource": [deployments],
                },
                {
                    "Effect": "Allow",
                    "Action": ["greengrass:UpdateCoreDeploymentStatus"],
                    "Resource": [deployments + "/cores/" + quote(thing_arn, safe="")],
                },
                {
                    "Effect": "Allow",
                    "Action": ["greengrass:GetConnectivityInfo", "greengrass:UpdateConnectivityInfo"],
                    "Resource": [thing_arn],
                },
            ]
        )
    if greengrass_v2_core:
        statements.append(
            {
                "Effect": "Allow",
                "Action": list(GREENGRASS_V2_CORE_DATA_PLANE_ACTIONS),
                "Resource": ["*"],
            }
        )
    if token_exchange_role_aliases:
        statements.append(
            {
                "Effect": "Allow",
                "Action": ["iot:AssumeRoleWithCertificate"],
                "Resource": [iot + "rolealias/" + alias for alias in token_exchange_role_aliases],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def policy_documents_differ(current, wanted):
    """True when the documents grant different things (order of statements/lists is ignored)."""
    if current is None:
        return True
    if isinstance(current, str):
        current = json.loads(current)
    return compare_policies(current, wanted)


def policy_versions_to_prune(versions, keep=MAX_POLICY_VERSIONS - 1):
    """Non-default versions to delete so that one more version fits: oldest first."""
    old = [v for v in versions if not v.get("isDefaultVersion")]
    old.sort(key=lambda v: int(v["versionId"]))
    excess = len(versions) - keep
    return [v["versionId"] for v in old[: max(excess, 0)]]


class CertificatePlan:
    REUSE = "reuse"
    CREATE = "create"
    ROTATE = "rotate"
    # An INACTIVE certificate for the device's key, left by a run interrupted before it activated it: completed
    # (attached, then activated) instead of issuing another.
    ADOPT = "adopt"

    def __init__(self, action, keep=None, retire=None):
        self.action = action
        self.keep = keep
        self.retire = retire or []

    def __repr__(self):
        return "CertificatePlan({0!r}, keep={1!r}, retire={2!r})".format(self.action, self.keep, self.retire)


def plan_certificate(mode, attached, rotate, csr_key_der=None, cert_key_der=public_key_der):
    """Decide whether to reuse the thing's certificate, create the first one, or rotate.

    attached: certificates attached to the thing (dicts with id, status, pem, creation_date).
    csr mode: reuse the ACTIVE certificate that carries the CSR's key. An ACTIVE certificate
    for another key means the device has a new key: with rotate a certificate is issued for
    the new key and the old ones are retired; without it that is an error (raised as
    InputError) because silently keeping the old certificate would leave the device with a
    key that does not match it.
    An INACTIVE attached certificate for the CSR's key is one an interrupted run created and attached but did not
    activate yet: it is adopted (on rotate, or when no other key has an ACTIVE certificate).
    aws_generated mode: reuse the newest ACTIVE certificate; rotate issues a new one on
    every run (there is no key to compare), so it is meant for one run.
    """
    active = [c for c in attached if c["status"] == "ACTIVE"]
    if mode == "csr":
        matching = [c for c in active if cert_key_der(c["pem"]) == csr_key_der]
        others = [c for c in active if c not in matching]
        if matching:
            # The device's key already has a certificate; other ACTIVE ones are retired only on rotate.
            return CertificatePlan(CertificatePlan.REUSE, keep=matching[0], retire=others if rotate else [])
        unfinished = [c for c in attached if c["status"] == "INACTIVE" and cert_key_der(c["pem"]) == csr_key_der]
        if unfinished and (rotate or not active):
            newest = sorted(unfinished, key=lambda c: str(c.get("creation_date") or ""))[-1]
            return CertificatePlan(CertificatePlan.ADOPT, keep=newest, retire=active)
        if not active:
            return CertificatePlan(CertificatePlan.CREATE)
        if rotate:
            return CertificatePlan(CertificatePlan.ROTATE, retire=active)
        raise InputError(
            "csr: the thing's ACTIVE certificate {0} was issued for a different key than this CSR's; "
            "set rotate_certificate: true to issue a certificate for the new key and retire the old "
            "one".format(", ".join(c["id"] for c in active))
        )
    if not active:
        return CertificatePlan(CertificatePlan.CREATE)
    if rotate:
        return CertificatePlan(CertificatePlan.ROTATE, retire=active)
    newest = sorted(active, key=lambda c: str(c.get("creation_date") or ""))[-1]
    return CertificatePlan(CertificatePlan.REUSE, keep=newest)
