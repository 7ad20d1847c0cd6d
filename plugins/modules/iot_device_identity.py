#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iot_device_identity
short_description: One edge device's AWS IoT identity (thing, certificate, policy)
version_added: 0.1.0
description:
  - Makes sure one device has its AWS IoT identity, and is safe to run on every provisioning pass -
    the thing (with attributes and thing group membership), one ACTIVE X.509 certificate attached
    to the thing, and an AWS IoT policy attached to that certificate.
  - Replaces C(greengo create) and the manual certificate steps of a hand-built Greengrass V1 core.
    The identity itself is generation-neutral; I(greengrass_v1_core) and I(greengrass_v2_core) add what
    a Greengrass V1 core or V2 nucleus needs to the default policy, after AWS's documented minimal policies.
  - In C(csr) mode (the default) the device makes its own key and CSR; only the CSR reaches AWS,
    so the private key never leaves the device. In C(aws_generated) mode AWS makes the key pair and
    the module returns the private key once, on the run that created it.
  - A re-run reuses the thing's ACTIVE certificate instead of minting another, and completes the INACTIVE
    certificate an interrupted run left for the device's key (see I(orphan_search_hours)). In C(csr) mode an
    ACTIVE certificate for a different key than the CSR's is a key rotation, done only with
    I(rotate_certificate=true); otherwise the module fails and changes nothing.
  - Every input is validated (thing name, CSR parse and signature, topic prefixes, policy document)
    before any AWS call, so a wrong input leaves nothing half-made.
author:
  - edgeml.greengrass maintainers (@edgeml)
options:
  thing_name:
    description:
      - Name of the AWS IoT thing, 1 to 128 characters from C([a-zA-Z0-9:_-]).
    type: str
    required: true
  state:
    description:
      - C(present) creates or updates the identity.
      - C(absent) detaches the policy and the certificates from the thing, deactivates and deletes
        the certificates that belong to no other thing, deletes the policy named I(policy_name)
        when no other principal uses it, removes the thing from its thing groups and deletes it. The thing
        groups are kept (other things may belong to them).
    type: str
    choices: [present, absent]
    default: present
  attributes:
    description:
      - Thing attributes to set. Merged into the thing's attributes; attributes not named here are kept.
    type: dict
  thing_groups:
    description:
      - Thing groups the thing must belong to. Membership in groups not listed here is kept.
      - A group that does not exist is an error unless I(create_thing_groups=true), so a typo does not
        create a stray group.
    type: list
    elements: str
    default: []
  create_thing_groups:
    description:
      - Create thing groups from I(thing_groups) that do not exist yet.
    type: bool
    default: false
  certificate_mode:
    description:
      - C(csr) issues the certificate from I(csr) (AWS C(CreateCertificateFromCsr)); the private key
        stays on the device.
      - C(aws_generated) has AWS create the key pair (C(CreateKeysAndCertificate)); the private key is
        returned once, in RV(private_key), and cannot be fetched again. Set C(no_log) on the task.
    type: str
    choices: [csr, aws_generated]
    default: csr
  csr:
    description:
      - PEM certificate signing request made on the device. Required with I(certificate_mode=csr) and
        I(state=present). Its signature is checked before any AWS call.
    type: str
  rotate_certificate:
    description:
      - In C(csr) mode, when the thing's ACTIVE certificate was issued for another key than the CSR's,
        issue a certificate for the CSR, attach it, and detach, deactivate and delete the old one.
        When the CSR's key already has a certificate nothing is rotated, so leaving this on is idempotent.
      - In C(aws_generated) mode there is no key to compare, so every run with this set issues a new
        certificate and key and retires the old ones. Use it for one run.
    type: bool
    default: false
  policy_name:
    description:
      - Name of the AWS IoT policy this module manages for the device. Defaults to C(<thing_name>-policy).
      - The module owns this policy; do not point it at a policy shared by other devices.
    type: str
  policy_document:
    description:
      - The policy to use instead of the default least-privilege one, as a dict or JSON text.
      - When the document differs from the policy's default version, a new default version is created
        and the oldest non-default versions are deleted so that at most five remain.
    type: json
  topic_prefixes:
    description:
      - Literal MQTT topic prefixes the default policy lets the device publish, receive and subscribe
        under (the policy appends the wildcard). No wildcard characters, no C($aws/) topics.
      - The thing's own shadow topics are always allowed. Defaults to C(<thing_name>/).
    type: list
    elements: str
  greengrass_v1_core:
    description:
      - Add to the default policy what a Greengrass V1 core needs (several client IDs, group CA topics,
        group role and certificates, its deployments and connectivity info), after AWS's documented
        minimal Greengrass core policy.
    type: bool
    default: true
  greengrass_v2_core:
    description:
      - Add to the default policy what a Greengrass V2 core's nucleus needs, after AWS's documented minimal
        AWS IoT policy for Greengrass V2 core devices, scoped to this thing - client IDs C(<thing_name>) and
        C(<thing_name>#*), its health telemetry topics, its IoT Jobs topics (deployments arrive as jobs), and the
        Greengrass data-plane actions C(greengrass:GetComponentVersionArtifact),
        C(greengrass:ResolveComponentCandidates), C(greengrass:GetDeploymentConfiguration) and
        C(greengrass:ListThingGroupsForCoreDevice).
      - The token exchange needs I(token_exchange_role_aliases) too.
    type: bool
    default: false
    version_added: 0.2.0
  greengrass_v1_group_id:
    description:
      - Greengrass V1 group ID that the core's deployment permissions are limited to. Without it they
        cover the deployments of any group in the account (the group is usually created after the identity).
    type: str
  token_exchange_role_aliases:
    description:
      - AWS IoT role aliases (M(edgeml.greengrass.iot_role_alias)) the default policy lets the device exchange its
        certificate for AWS credentials with (C(iot:AssumeRoleWithCertificate)), as a Greengrass V2 core's token
        exchange service does. Only these aliases; none by default.
    type: list
    elements: str
    default: []
    version_added: 0.2.0
  orphan_search_hours:
    description:
      - In C(csr) mode, how far back (hours) to look for INACTIVE certificates issued for the device's key that no
        thing holds. New certificates are created INACTIVE and activated only after the policy and the thing are
        attached, so a run interrupted in between (or a create whose response was lost and whose retry created a
        second one) leaves such certificates. The newest is adopted instead of issuing another; the others are
        deleted.
      - Each INACTIVE certificate created in this window costs one C(DescribeCertificate) when the module would
        otherwise issue a certificate. C(0) turns the search off.
      - Also adopts an INACTIVE certificate for the device's key that an administrator deactivated, just as a new
        certificate would be issued for that key without it; retire a device with I(state=absent).
    type: int
    default: 168
    version_added: 0.2.0
notes:
  - Check mode returns the predicted result without writing; values that only AWS can give (a new
    certificate's ARN, ID and PEM) are C(null) there.
  - Requires the Python library C(cryptography) on the controller for I(certificate_mode=csr).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Make the device's key and CSR on the device
  community.crypto.openssl_privatekey:
    path: /greengrass/certs/core.key
    type: ECC
    curve: secp256r1
    mode: "0600"

- name: Build the CSR on the device
  community.crypto.openssl_csr_pipe:
    privatekey_path: /greengrass/certs/core.key
    common_name: "{{ inventory_hostname }}"
  register: device_csr

- name: Give the device its AWS IoT identity (only the CSR leaves the device)
  edgeml.greengrass.iot_device_identity:
    thing_name: "{{ inventory_hostname }}"
    csr: "{{ device_csr.csr }}"
    attributes:
      site: plant-7
    thing_groups: [edge-detectors]
    create_thing_groups: true
    topic_prefixes:
      - "detections/{{ inventory_hostname }}/"
  delegate_to: localhost
  register: identity

- name: Replace the certificate after the device made a new key
  edgeml.greengrass.iot_device_identity:
    thing_name: "{{ inventory_hostname }}"
    csr: "{{ new_csr.csr }}"
    rotate_certificate: true
  delegate_to: localhost

- name: Key pair made by AWS (the key is returned once)
  edgeml.greengrass.iot_device_identity:
    thing_name: lab-core-1
    certificate_mode: aws_generated
  register: lab_identity
  no_log: true

- name: Remove the identity (policy, certificates, thing)
  edgeml.greengrass.iot_device_identity:
    thing_name: "{{ inventory_hostname }}"
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
thing:
  description: The thing.
  returned: when I(state=present)
  type: dict
  contains:
    name:
      description: Thing name.
      type: str
      sample: edge-cam-01
    arn:
      description: Thing ARN (C(null) in check mode before creation).
      type: str
      sample: arn:aws:iot:us-east-1:123456789012:thing/edge-cam-01
    attributes:
      description: The thing's attributes.
      type: dict
    thing_groups:
      description: Names of the thing groups the thing belongs to.
      type: list
      elements: str
certificate:
  description: The certificate the device uses.
  returned: when I(state=present)
  type: dict
  contains:
    arn:
      description: Certificate ARN.
      type: str
    id:
      description: Certificate ID.
      type: str
    pem:
      description: The certificate in PEM form (public).
      type: str
    status:
      description: Certificate status.
      type: str
      sample: ACTIVE
policy:
  description: The AWS IoT policy attached to the certificate.
  returned: when I(state=present)
  type: dict
  contains:
    name:
      description: Policy name.
      type: str
    arn:
      description: Policy ARN.
      type: str
    document:
      description: The policy document of the default version.
      type: dict
endpoints:
  description: Endpoints a device needs.
  returned: when I(state=present)
  type: dict
  contains:
    data:
      description: The ATS-signed data endpoint (C(iot:Data-ATS)) for MQTT and HTTPS.
      type: str
    credentials:
      description: The credentials provider endpoint (C(iot:CredentialProvider)).
      type: str
private_key:
  description:
    - The private key made by AWS. Only in C(aws_generated) mode, only on the run that created the
      certificate; AWS cannot return it again.
  returned: when a certificate was created with I(certificate_mode=aws_generated)
  type: str
retired_certificates:
  description: IDs of certificates detached, deactivated and deleted by this run (rotation or removal).
  returned: always
  type: list
  elements: str
adopted_certificate:
  description:
    - ID of an INACTIVE certificate for the device's key, left by an interrupted run, that this run completed
      (attached and activated) instead of issuing another; C(null) when none.
  returned: when I(state=present)
  type: str
  version_added: 0.2.0
deleted_orphan_certificates:
  description: IDs of other INACTIVE certificates for the device's key, held by no thing, that this run deleted.
  returned: when I(state=present)
  type: list
  elements: str
  version_added: 0.2.0
"""

import datetime  # noqa: E402
import json  # noqa: E402

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._iot import InputError  # noqa: E402


def validate(params):
    """Every input check that needs no AWS call; raises InputError naming the input."""
    iot.validate_thing_name(params["thing_name"])
    policy_name = params["policy_name"] or iot.default_policy_name(params["thing_name"])
    iot.validate_policy_name(policy_name)
    checked = {"policy_name": policy_name, "csr": None, "policy_document": None, "topic_prefixes": None}
    if params["state"] == "absent":
        return checked
    if params["orphan_search_hours"] < 0:
        raise InputError(
            "orphan_search_hours: {0} is negative; expected a number of hours, or 0 to not look for the "
            "certificates of interrupted runs".format(params["orphan_search_hours"])
        )
    iot.validate_attributes(params["attributes"])
    iot.validate_thing_groups(params["thing_groups"])
    iot.validate_greengrass_group_id(params["greengrass_v1_group_id"])
    for alias in params["token_exchange_role_aliases"]:
        iot.validate_role_alias_name(alias, option="token_exchange_role_aliases")
    if params["certificate_mode"] == "csr":
        if not params["csr"]:
            raise InputError("csr: required with certificate_mode=csr (the PEM CSR made on the device)")
        checked["csr"] = iot.load_csr(params["csr"])
    elif params["csr"]:
        raise InputError("csr: only used with certificate_mode=csr, but certificate_mode is aws_generated")
    if params["policy_document"] is not None:
        checked["policy_document"] = iot.load_policy_document(params["policy_document"])
    prefixes = params["topic_prefixes"]
    if prefixes is None:
        prefixes = [params["thing_name"] + "/"]
    checked["topic_prefixes"] = iot.validate_topic_prefixes(prefixes)
    return checked


def account_of(module, *arns):
    """(partition, account) from any known ARN of ours, else from STS."""
    for arn in arns:
        if arn:
            parts = arn.split(":")
            return parts[1], parts[4]
    return iot.caller_identity(module.client("sts"))


def thing_view(thing, groups):
    if thing is None:
        return None
    return {
        "name": thing["thingName"],
        "arn": thing.get("thingArn"),
        "attributes": thing.get("attributes", {}),
        "thing_groups": sorted(groups),
    }


def certificate_view(cert):
    return {"arn": cert["arn"], "id": cert["id"], "pem": cert["pem"], "status": cert["status"]}


def ensure_present(module, client, checked):
    params = module.params
    thing_name = params["thing_name"]
    policy_name = checked["policy_name"]
    check = module.check_mode
    changed = False

    # Read everything first, decide, and fail before any write.
    thing = iot.describe_thing(client, thing_name)
    groups = iot.list_thing_groups_for_thing(client, thing_name) if thing else []
    attached = iot.attached_certificates(client, thing_name) if thing else []
    policy = iot.get_policy(client, policy_name)

    missing_groups = [g for g in params["thing_groups"] if g not in groups]
    groups_to_create = [g for g in missing_groups if iot.describe_thing_group(client, g) is None]
    if groups_to_create and not params["create_thing_groups"]:
        raise InputError(
            "thing_groups: {0}: no such thing group; create it first or set create_thing_groups: true".format(
                ", ".join(groups_to_create)
            )
        )

    csr_key = iot.public_key_der(checked["csr"]) if checked["csr"] is not None else None
    plan = iot.plan_certificate(params["certificate_mode"], attached, params["rotate_certificate"], csr_key)

    partition, account = account_of(module, thing and thing["thingArn"], policy and policy["policyArn"])
    wanted_document = checked["policy_document"] or iot.default_policy_document(
        thing_name,
        partition,
        module.region,
        account,
        checked["topic_prefixes"],
        params["greengrass_v1_core"],
        params["greengrass_v1_group_id"],
        params["token_exchange_role_aliases"],
        params["greengrass_v2_core"],
    )
    current_document = policy["policyDocument"] if policy else None
    document_differs = iot.policy_documents_differ(current_document, wanted_document)

    before = {
        "thing": thing_view(thing, groups),
        "certificates": [{"id": c["id"], "status": c["status"]} for c in attached],
        "policy": {"name": policy_name, "document": json.loads(current_document)} if policy else None,
    }

    # Thing, attributes, groups.
    wanted_attributes = dict(params["attributes"] or {})
    if thing is None:
        changed = True
        if not check:
            iot.create_thing(client, thing_name, wanted_attributes)
            thing = iot.describe_thing(client, thing_name)
        else:
            thing = {"thingName": thing_name, "thingArn": None, "attributes": wanted_attributes}
    else:
        current_attributes = thing.get("attributes", {})
        if any(current_attributes.get(k) != v for k, v in wanted_attributes.items()):
            changed = True
            if not check:
                iot.merge_thing_attributes(client, thing_name, wanted_attributes)
            thing = dict(thing, attributes=dict(current_attributes, **wanted_attributes))
    for group in missing_groups:
        changed = True
        if not check:
            if group in groups_to_create:
                iot.create_thing_group(client, group)
            iot.add_thing_to_thing_group(client, thing_name, group)
    groups = sorted(set(groups) | set(missing_groups))

    # Policy: create, or a new default version only when the document differs.
    if policy is None:
        changed = True
        if not check:
            policy = iot.create_policy(client, policy_name, wanted_document)
    elif document_differs:
        changed = True
        if not check:
            versions = iot.list_policy_versions(client, policy_name)
            for version_id in iot.policy_versions_to_prune(versions):
                iot.delete_policy_version(client, policy_name, version_id)
            iot.create_policy_version(client, policy_name, wanted_document)
    policy_arn = policy["policyArn"] if policy else None

    # Certificate. New ones are created INACTIVE and activated last, after the policy and the thing are
    # attached, so a run interrupted in between leaves no working credential, and the next run finds that
    # certificate by the device's public key and completes it (csr mode) instead of issuing another.
    private_key = None
    adopted = None
    orphans = []
    if plan.action == iot.CertificatePlan.REUSE:
        certificate = certificate_view(plan.keep)
    else:
        changed = True
        if plan.action == iot.CertificatePlan.ADOPT:
            adopted = plan.keep
        elif csr_key is not None:
            orphans = unattached_certificates_for_key(module, client, csr_key, exclude=[c["id"] for c in attached])
            adopted = orphans.pop(0) if orphans else None
        if adopted is not None:
            certificate = certificate_view(adopted)
        elif check:
            certificate = {"arn": None, "id": None, "pem": None, "status": "INACTIVE"}
        else:
            if params["certificate_mode"] == "csr":
                created = iot.create_certificate_from_csr(client, params["csr"])
            else:
                created = iot.create_keys_and_certificate(client)
                private_key = created["keyPair"]["PrivateKey"]
            certificate = {
                "arn": created["certificateArn"],
                "id": created["certificateId"],
                "pem": created["certificatePem"],
                "status": "INACTIVE",
            }

    # Attachments: policy -> certificate, certificate -> thing.
    if certificate["arn"]:
        attached_policy_names = [p["policyName"] for p in iot.list_attached_policies(client, certificate["arn"])]
        if policy_name not in attached_policy_names:
            changed = True
            if not check:
                iot.attach_policy(client, policy_name, certificate["arn"])
        if certificate["arn"] not in [c["arn"] for c in attached]:
            changed = True
            if not check:
                iot.attach_thing_principal(client, thing_name, certificate["arn"])
    elif not check:
        module.fail_json(msg="AWS returned no certificate ARN for thing {0}".format(thing_name))

    # Other INACTIVE certificates for the same key that no thing holds are leftovers of interrupted runs, or of
    # a create whose response was lost and whose retry created a second one: deleted before activating ours.
    if plan.action != iot.CertificatePlan.REUSE and csr_key is not None and certificate["arn"] and not check:
        orphans = unattached_certificates_for_key(module, client, csr_key, exclude=[certificate["id"]])
    for orphan in orphans:
        changed = True
        if not check:
            delete_unattached_certificate(client, orphan)
    if certificate["status"] != "ACTIVE":
        changed = True
        if not check:
            iot.activate_certificate(client, certificate["id"])
        certificate["status"] = "ACTIVE"

    # Retire replaced certificates only after the new one is attached.
    retired = []
    for old in plan.retire:
        changed = True
        retired.append(old["id"])
        if not check:
            retire_certificate(module, client, thing_name, old)

    after = {
        "thing": thing_view(thing, groups),
        "certificates": sorted(
            [
                {"id": c["id"], "status": "ACTIVE" if c["id"] == certificate["id"] else c["status"]}
                for c in attached
                if c["id"] not in retired
            ]
            + (
                []
                if certificate["id"] in [c["id"] for c in attached]
                else [{"id": certificate["id"], "status": "ACTIVE"}]
            ),
            key=lambda c: str(c["id"]),
        ),
        "policy": {"name": policy_name, "document": wanted_document},
    }
    before["certificates"].sort(key=lambda c: str(c["id"]))

    result = {
        "changed": changed,
        "thing": thing_view(thing, groups),
        "certificate": certificate,
        "policy": {"name": policy_name, "arn": policy_arn, "document": wanted_document},
        "endpoints": iot.describe_endpoints(client),
        "retired_certificates": retired,
        "adopted_certificate": adopted["id"] if adopted else None,
        "deleted_orphan_certificates": [c["id"] for c in orphans],
        "diff": {"before": before, "after": after},
    }
    if private_key is not None:
        result["private_key"] = private_key
    return result


def unattached_certificates_for_key(module, client, key_der, exclude):
    """INACTIVE certificates for the device's key, created within orphan_search_hours and attached to no thing,
    newest first (each dict as attached_certificates gives). Only INACTIVE ones: the module activates a
    certificate last, so an interrupted run's certificate is INACTIVE, and listing the account's INACTIVE
    certificates of a few days needs one DescribeCertificate per candidate, not one per device certificate."""
    hours = module.params["orphan_search_hours"]
    if not hours:
        return []
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours)
    found = []
    for listed in iot.list_certificates_created_since(client, since):
        if listed["status"] != "INACTIVE" or listed["certificateId"] in exclude:
            continue
        description = iot.describe_certificate(client, listed["certificateId"])
        if description is None or iot.public_key_der(description["certificatePem"]) != key_der:
            continue
        if iot.list_principal_things(client, description["certificateArn"]):
            continue
        found.append(iot.certificate_record(description))
    return sorted(found, key=lambda c: str(c["creation_date"] or ""), reverse=True)


def delete_unattached_certificate(client, cert):
    for attached_policy in iot.list_attached_policies(client, cert["arn"]):
        iot.detach_policy(client, attached_policy["policyName"], cert["arn"])
    iot.delete_certificate(client, cert["id"])


def retire_certificate(module, client, thing_name, cert):
    """Detach a certificate from the thing; deactivate and delete it unless another thing still uses it."""
    iot.detach_thing_principal(client, thing_name, cert["arn"])
    if [t for t in iot.list_principal_things(client, cert["arn"]) if t != thing_name]:
        module.warn(
            "certificate {0} is still attached to other things; it was detached from {1} but not deleted".format(
                cert["id"], thing_name
            )
        )
        return
    for attached_policy in iot.list_attached_policies(client, cert["arn"]):
        iot.detach_policy(client, attached_policy["policyName"], cert["arn"])
    if cert["status"] == "ACTIVE":
        iot.deactivate_certificate(client, cert["id"])
    iot.delete_certificate(client, cert["id"])


def ensure_absent(module, client, checked):
    thing_name = module.params["thing_name"]
    policy_name = checked["policy_name"]
    check = module.check_mode
    thing = iot.describe_thing(client, thing_name)
    attached = iot.attached_certificates(client, thing_name) if thing else []
    policy = iot.get_policy(client, policy_name)
    memberships = iot.list_thing_groups_for_thing(client, thing_name) if thing else []
    before = {
        "thing": thing_view(thing, memberships),
        "certificates": [{"id": c["id"], "status": c["status"]} for c in attached],
        "policy": {"name": policy_name} if policy else None,
    }
    changed = False
    retired = []
    for cert in attached:
        changed = True
        retired.append(cert["id"])
        if not check:
            retire_certificate(module, client, thing_name, cert)

    if policy is not None:
        ours = set(c["arn"] for c in attached)
        others = [t for t in iot.list_targets_for_policy(client, policy_name) if t not in ours]
        if others:
            module.warn(
                "policy {0} is still attached to {1} other principal(s); it was kept".format(policy_name, len(others))
            )
        else:
            changed = True
            if not check:
                for version in iot.list_policy_versions(client, policy_name):
                    if not version.get("isDefaultVersion"):
                        iot.delete_policy_version(client, policy_name, version["versionId"])
                iot.delete_policy(client, policy_name)

    if thing is not None:
        changed = True
        if not check:
            # Out of its groups first, so that no group lists a thing that is gone (the groups themselves stay).
            for group in memberships:
                iot.remove_thing_from_thing_group(client, thing_name, group)
            iot.delete_thing(client, thing_name)
    after = {"thing": None, "certificates": [], "policy": None}
    return {"changed": changed, "retired_certificates": retired, "diff": {"before": before, "after": after}}


def main():
    argument_spec = dict(
        thing_name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        attributes=dict(type="dict"),
        thing_groups=dict(type="list", elements="str", default=[]),
        create_thing_groups=dict(type="bool", default=False),
        certificate_mode=dict(type="str", choices=["csr", "aws_generated"], default="csr"),
        csr=dict(type="str"),
        rotate_certificate=dict(type="bool", default=False),
        policy_name=dict(type="str"),
        policy_document=dict(type="json"),
        topic_prefixes=dict(type="list", elements="str"),
        greengrass_v1_core=dict(type="bool", default=True),
        greengrass_v2_core=dict(type="bool", default=False),
        greengrass_v1_group_id=dict(type="str"),
        token_exchange_role_aliases=dict(type="list", elements="str", default=[], no_log=False),
        orphan_search_hours=dict(type="int", default=168),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)

    try:
        checked = validate(module.params)
    except InputError as exc:
        module.fail_json(msg=str(exc))

    client = module.client("iot")
    try:
        if module.params["state"] == "absent":
            result = ensure_absent(module, client, checked)
        else:
            result = ensure_present(module, client, checked)
    except InputError as exc:
        module.fail_json(msg=str(exc))
    except AWSCallError as exc:
        fail_aws_call(module, exc, None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
