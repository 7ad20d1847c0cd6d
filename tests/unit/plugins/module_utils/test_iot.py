"""Unit tests for the pure half of module_utils/_iot.py: validation, policy compare, rotation plan.

Keys, CSRs and certificates here are real ones made with ``cryptography``; nothing is mocked.
"""

from __future__ import annotations

import datetime
import json

import pytest
from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot
from ansible_collections.edgeml.greengrass.plugins.module_utils._iot import CertificatePlan, InputError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "core-1")])


def make_key(kind="ec"):
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)


def make_csr_pem(key) -> str:
    csr = x509.CertificateSigningRequestBuilder().subject_name(NAME).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def make_cert_pem(key) -> str:
    issuer_key = make_key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(NAME)
        .issuer_name(NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cert(cert_id, pem, status="ACTIVE", created="2026-01-01"):
    return {"id": cert_id, "arn": "arn:aws:iot:us-east-1:1:cert/" + cert_id, "pem": pem, "status": status,
            "creation_date": created}  # fmt: skip


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("name", ["core-1", "a", "x" * 128, "plant:7_cam-2"])
def test_valid_thing_names(name):
    assert iot.validate_thing_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 129, "has space", "slash/name", "dot.name", None])
def test_invalid_thing_names_name_the_input(name):
    with pytest.raises(InputError, match=r"^thing_name: .*\[a-zA-Z0-9:_-\]"):
        iot.validate_thing_name(name)


def test_thing_group_names_are_checked_under_their_own_input():
    with pytest.raises(InputError, match=r"^thing_groups: 'bad group'"):
        iot.validate_thing_groups(["ok-group", "bad group"])


@pytest.mark.parametrize("prefix", ["detections/", "plant7/cam-1/out", "a"])
def test_literal_topic_prefixes_pass(prefix):
    assert iot.validate_topic_prefixes([prefix]) == [prefix]


@pytest.mark.parametrize(
    "prefix, reason",
    [
        ("detections/#", "wildcard '#'"),
        ("detections/+/out", "wildcard '\\+'"),
        ("detections/*", "wildcard '\\*'"),
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("$aws/things/other/shadow/", "reserved AWS topic"),
        ("a//b", "empty topic level"),
    ],
)
def test_bad_topic_prefixes_are_refused(prefix, reason):
    with pytest.raises(InputError, match=r"^topic_prefixes: .*" + reason):
        iot.validate_topic_prefixes([prefix])


def test_attributes_are_checked():
    assert iot.validate_attributes({"site": "plant-7"})
    with pytest.raises(InputError, match=r"^attributes: value 7"):
        iot.validate_attributes({"site": 7})
    with pytest.raises(InputError, match=r"^attributes: name 'bad name'"):
        iot.validate_attributes({"bad name": "x"})


def test_greengrass_group_id_shape():
    assert iot.validate_greengrass_group_id("4d3e0e48-8b8a-4f8e-9a21-0c0b8a3f1f55")
    with pytest.raises(InputError, match="^greengrass_v1_group_id:"):
        iot.validate_greengrass_group_id("arn:aws:greengrass:/groups/x")


def test_policy_document_accepts_json_text_and_dicts():
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
    assert iot.load_policy_document(json.dumps(doc)) == doc
    assert iot.load_policy_document(doc) is doc


@pytest.mark.parametrize(
    "value, match",
    [
        ("{not json", "not valid JSON"),
        ('{"Version": "2012-10-17"}', "'Statement'"),
        ('{"Version": "2012-10-17", "Statement": []}', "non-empty list"),
        ('{"Statement": [{"Effect": "Allow"}]}', "'Effect' and 'Action'"),
    ],
)
def test_bad_policy_documents_are_refused(value, match):
    with pytest.raises(InputError, match="^policy_document: .*" + match):
        iot.load_policy_document(value)


def test_csr_with_valid_signature_loads():
    key = make_key()
    csr = iot.load_csr(make_csr_pem(key))
    assert iot.public_key_der(csr) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_csr_that_is_not_pem_is_refused():
    with pytest.raises(InputError, match="^csr: expected a PEM certificate signing request"):
        iot.load_csr("hello")


def test_csr_with_garbage_body_is_refused():
    with pytest.raises(InputError, match="^csr: not a parseable"):
        iot.load_csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")


def test_csr_with_a_broken_signature_is_refused():
    """Flip one byte of the signature: the CSR still parses, but its signature no longer verifies."""
    key = make_key()
    der = bytearray(x509.load_pem_x509_csr(make_csr_pem(key).encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(InputError, match="^csr: the signature does not match"):
        iot.load_csr(tampered)


# ---------------------------------------------------------------- policy


def policy(topic_prefixes=("core-1/",), greengrass=True, group=None):
    return iot.default_policy_document(
        "core-1", "aws", "us-east-1", "123456789012", list(topic_prefixes), greengrass, group
    )


def test_default_policy_is_scoped_to_the_thing():
    doc = policy()
    connect = [s for s in doc["Statement"] if s["Action"] == ["iot:Connect"]][0]
    assert connect["Resource"][0] == "arn:aws:iot:us-east-1:123456789012:client/core-1"
    for statement in doc["Statement"]:
        assert not any(a in ("*", "iot:*", "greengrass:*") for a in statement["Action"])
        if statement["Resource"] == ["*"]:
            # Only the two Greengrass actions AWS documents without resource-level permissions.
            assert statement["Action"] == ["greengrass:AssumeRoleForGroup", "greengrass:CreateCertificate"]
    publish = [s for s in doc["Statement"] if "iot:Publish" in s["Action"]][0]["Resource"]
    assert "arn:aws:iot:us-east-1:123456789012:topic/core-1/*" in publish
    assert "arn:aws:iot:us-east-1:123456789012:topic/$aws/things/core-1/shadow/*" in publish
    subscribe = [s for s in doc["Statement"] if s["Action"] == ["iot:Subscribe"]][0]["Resource"]
    assert all(":topicfilter/" in r for r in subscribe)


def test_policy_without_greengrass_has_no_greengrass_actions():
    doc = policy(greengrass=False)
    assert not [a for s in doc["Statement"] for a in s["Action"] if a.startswith("greengrass:")]


def test_group_id_pins_deployment_permissions():
    doc = policy(group="abc-123")
    deploy = [s for s in doc["Statement"] if "greengrass:GetDeployment" in s["Action"]][0]
    assert deploy["Resource"] == ["arn:aws:greengrass:us-east-1:123456789012:/greengrass/groups/abc-123/deployments/*"]


def test_same_policy_in_another_order_does_not_differ():
    doc = policy(topic_prefixes=["a/", "b/"])
    shuffled = json.loads(json.dumps(doc))
    shuffled["Statement"].reverse()
    for statement in shuffled["Statement"]:
        statement["Resource"].reverse()
    assert not iot.policy_documents_differ(json.dumps(shuffled), doc)


def test_changed_topic_makes_policy_differ():
    assert iot.policy_documents_differ(json.dumps(policy(["a/"])), policy(["b/"]))
    assert iot.policy_documents_differ(None, policy())


def test_prune_keeps_room_for_one_more_version_and_never_the_default():
    versions = [{"versionId": str(i), "isDefaultVersion": i == 3} for i in range(1, 6)]
    assert iot.policy_versions_to_prune(versions) == ["1"]
    assert iot.policy_versions_to_prune(versions[:2]) == []
    versions = [{"versionId": str(i), "isDefaultVersion": i == 1} for i in range(1, 6)]
    assert iot.policy_versions_to_prune(versions) == ["2"]


# ---------------------------------------------------------------- certificate plan


def key_der(key):
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_csr_mode_without_certificates_creates():
    plan = iot.plan_certificate("csr", [], False, key_der(make_key()))
    assert plan.action == CertificatePlan.CREATE and plan.retire == []


def test_csr_mode_reuses_the_certificate_of_the_same_key():
    key = make_key()
    current = cert("c1", make_cert_pem(key))
    plan = iot.plan_certificate("csr", [current], False, key_der(key))
    assert plan.action == CertificatePlan.REUSE and plan.keep is current and plan.retire == []
    # rotate on the same key changes nothing: there is nothing to rotate to.
    assert iot.plan_certificate("csr", [current], True, key_der(key)).action == CertificatePlan.REUSE


def test_csr_mode_new_key_without_rotate_is_an_error_naming_the_option():
    current = cert("c1", make_cert_pem(make_key()))
    with pytest.raises(InputError, match=r"^csr: .*c1.*rotate_certificate: true"):
        iot.plan_certificate("csr", [current], False, key_der(make_key("rsa")))


def test_csr_mode_new_key_with_rotate_retires_every_active_certificate():
    old1, old2 = cert("c1", make_cert_pem(make_key())), cert("c2", make_cert_pem(make_key()))
    plan = iot.plan_certificate("csr", [old1, old2], True, key_der(make_key()))
    assert plan.action == CertificatePlan.ROTATE and plan.retire == [old1, old2]


def test_inactive_certificates_of_other_keys_are_ignored():
    key = make_key()
    inactive = cert("c1", make_cert_pem(make_key()), status="INACTIVE")
    assert iot.plan_certificate("csr", [inactive], False, key_der(key)).action == CertificatePlan.CREATE
    assert iot.plan_certificate("aws_generated", [inactive], False).action == CertificatePlan.CREATE


def test_inactive_certificate_of_the_device_key_is_adopted_newest_first():
    key = make_key()
    older = cert("c1", make_cert_pem(key), status="INACTIVE", created="2026-01-01")
    newer = cert("c2", make_cert_pem(key), status="INACTIVE", created="2026-02-01")
    plan = iot.plan_certificate("csr", [newer, older], False, key_der(key))
    assert plan.action == CertificatePlan.ADOPT and plan.keep is newer and plan.retire == []


def test_interrupted_rotation_is_adopted_only_with_rotate():
    key = make_key()
    old = cert("c1", make_cert_pem(make_key()))
    unfinished = cert("c2", make_cert_pem(key), status="INACTIVE")
    plan = iot.plan_certificate("csr", [old, unfinished], True, key_der(key))
    assert plan.action == CertificatePlan.ADOPT and plan.keep is unfinished and plan.retire == [old]
    with pytest.raises(InputError, match="^csr: the thing's ACTIVE certificate c1"):
        iot.plan_certificate("csr", [old, unfinished], False, key_der(key))


def test_csr_mode_matching_key_with_rotate_retires_the_others():
    key = make_key()
    mine, stale = cert("c1", make_cert_pem(key)), cert("c2", make_cert_pem(make_key()))
    plan = iot.plan_certificate("csr", [stale, mine], True, key_der(key))
    assert plan.action == CertificatePlan.REUSE and plan.keep is mine and plan.retire == [stale]


def test_aws_generated_reuses_the_newest_active_and_rotate_replaces():
    older = cert("c1", "unused", created="2026-01-01")
    newer = cert("c2", "unused", created="2026-02-01")
    plan = iot.plan_certificate("aws_generated", [newer, older], False)
    assert plan.action == CertificatePlan.REUSE and plan.keep is newer
    plan = iot.plan_certificate("aws_generated", [newer, older], True)
    assert plan.action == CertificatePlan.ROTATE and plan.retire == [newer, older]


def test_caller_identity_gives_partition_and_account_and_names_the_call_when_sts_fails():
    import boto3
    from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError
    from botocore.stub import Stubber

    sts = boto3.client("sts", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")  # noqa: S106 - stubbed
    with Stubber(sts) as stub:
        arn = "arn:aws-cn:iam::123456789012:user/deployer"
        stub.add_response("get_caller_identity", {"Arn": arn, "Account": "123456789012", "UserId": "AIDA"})
        assert iot.caller_identity(sts) == ("aws-cn", "123456789012")
        stub.add_client_error("get_caller_identity", "AccessDenied", "not allowed", 403)
        with pytest.raises(AWSCallError, match="get caller identity"):
            iot.caller_identity(sts)
