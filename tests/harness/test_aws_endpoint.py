"""The local AWS endpoint answers real IoT and Greengrass calls, and the CSR fix holds."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from testbed.aws_endpoint import EndpointError, LocalAwsEndpoint

pytestmark = pytest.mark.aws


def _csr(key, cn="edge-01"):
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_iot_and_greengrass_calls_answer(clean_aws, aws_client):
    iot = aws_client("iot")
    iot.create_thing(thingName="edge-01")
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["edge-01"]
    assert iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"].endswith("amazonaws.com")

    greengrass = aws_client("greengrass")
    created = greengrass.create_group(Name="edge-group")
    assert greengrass.get_group(GroupId=created["Id"])["Name"] == "edge-group"


@pytest.mark.parametrize(
    "make_key",
    [lambda: ec.generate_private_key(ec.SECP256R1()), lambda: rsa.generate_private_key(65537, 2048)],
    ids=["ecdsa-p256", "rsa-2048"],
)
def test_certificate_from_csr_carries_the_csr_key(clean_aws, aws_client, make_key):
    key = make_key()
    iot = aws_client("iot")
    created = iot.create_certificate_from_csr(certificateSigningRequest=_csr(key), setAsActive=True)
    cert = x509.load_pem_x509_certificate(created["certificatePem"].encode())
    assert _spki(cert.public_key()) == _spki(key.public_key())
    described = iot.describe_certificate(certificateId=created["certificateId"])["certificateDescription"]
    assert described["status"] == "ACTIVE"


@pytest.mark.parametrize("options", [{}, {"setAsActive": False}], ids=["default", "setAsActive-false"])
def test_certificate_from_csr_inactive_unless_asked(clean_aws, aws_client, options):
    # setAsActive travels in the query string as text: stock moto took "false" for true.
    iot = aws_client("iot")
    csr = _csr(ec.generate_private_key(ec.SECP256R1()))
    created = iot.create_certificate_from_csr(certificateSigningRequest=csr, **options)
    described = iot.describe_certificate(certificateId=created["certificateId"])["certificateDescription"]
    assert described["status"] == "INACTIVE"


def test_csr_with_a_broken_signature_is_rejected(clean_aws, aws_client):
    # RSA signatures have a fixed length, so swapping two CSRs' signatures keeps the DER well-formed
    # while the signature no longer matches the CSR's key.
    good = _csr(rsa.generate_private_key(65537, 2048))
    other = _csr(rsa.generate_private_key(65537, 2048))
    good_der = x509.load_pem_x509_csr(good.encode())
    other_der = x509.load_pem_x509_csr(other.encode())
    tampered_der = good_der.public_bytes(serialization.Encoding.DER).replace(good_der.signature, other_der.signature)
    tampered = x509.load_der_x509_csr(tampered_der).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(ClientError, match="InvalidRequestException"):
        aws_client("iot").create_certificate_from_csr(certificateSigningRequest=tampered)


def test_iot_endpoints_are_fixed_per_account_and_region(clean_aws, aws_client):
    iot = aws_client("iot")
    for endpoint_type in ("iot:Data-ATS", "iot:CredentialProvider"):
        first = iot.describe_endpoint(endpointType=endpoint_type)["endpointAddress"]
        assert iot.describe_endpoint(endpointType=endpoint_type)["endpointAddress"] == first
    data = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    credentials = iot.describe_endpoint(endpointType="iot:CredentialProvider")["endpointAddress"]
    assert data != credentials


def test_port_in_use_gives_a_clear_message(aws_endpoint):
    with pytest.raises(EndpointError, match=f"port {aws_endpoint.port} .* already in use"):
        LocalAwsEndpoint(port=aws_endpoint.port).start()
