"""Unit tests for iot_device_identity's input validation, which runs before any AWS call."""

from __future__ import annotations

import pytest
from ansible_collections.edgeml.greengrass.plugins.module_utils._iot import InputError
from ansible_collections.edgeml.greengrass.plugins.modules import iot_device_identity
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@pytest.fixture(scope="module")
def csr_pem():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "core-1")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def params(**overrides):
    base = dict(
        thing_name="core-1",
        state="present",
        attributes=None,
        thing_groups=[],
        create_thing_groups=False,
        certificate_mode="csr",
        csr=None,
        rotate_certificate=False,
        policy_name=None,
        policy_document=None,
        topic_prefixes=None,
        greengrass_v1_core=True,
        greengrass_v1_group_id=None,
        token_exchange_role_aliases=[],
        orphan_search_hours=168,
    )
    base.update(overrides)
    return base


def test_defaults_are_filled_in(csr_pem):
    checked = iot_device_identity.validate(params(csr=csr_pem))
    assert checked["policy_name"] == "core-1-policy"
    assert checked["topic_prefixes"] == ["core-1/"]
    assert checked["csr"] is not None and checked["policy_document"] is None


def test_csr_is_required_in_csr_mode():
    with pytest.raises(InputError, match="^csr: required with certificate_mode=csr"):
        iot_device_identity.validate(params())


def test_csr_is_refused_in_aws_generated_mode(csr_pem):
    with pytest.raises(InputError, match="^csr: only used with certificate_mode=csr"):
        iot_device_identity.validate(params(certificate_mode="aws_generated", csr=csr_pem))


def test_aws_generated_mode_needs_no_csr():
    assert iot_device_identity.validate(params(certificate_mode="aws_generated"))["csr"] is None


def test_absent_needs_only_a_valid_name():
    checked = iot_device_identity.validate(params(state="absent", topic_prefixes=["bad/#"]))
    assert checked["policy_name"] == "core-1-policy"
    with pytest.raises(InputError, match="^thing_name:"):
        iot_device_identity.validate(params(state="absent", thing_name="bad name"))


@pytest.mark.parametrize(
    "override, match",
    [
        ({"policy_name": "bad name"}, "^policy_name:"),
        ({"thing_groups": ["ok", "bad/group"]}, "^thing_groups:"),
        ({"attributes": {"k": "v v"}}, "^attributes:"),
        ({"topic_prefixes": ["x/+/y"]}, "^topic_prefixes:"),
        ({"greengrass_v1_group_id": "not a group"}, "^greengrass_v1_group_id:"),
        ({"policy_document": "[]"}, "^policy_document:"),
    ],
)
def test_each_bad_input_is_named(csr_pem, override, match):
    with pytest.raises(InputError, match=match):
        iot_device_identity.validate(params(csr=csr_pem, **override))
