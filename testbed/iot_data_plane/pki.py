"""The test bed's own certificate authority (test equipment; never Amazon's).

One CA per endpoint process plays both of AWS IoT's roles: it issues device certificates for CSRs
(CreateCertificateFromCsr; on AWS the "Amazon IoT" CA) and the data plane's TLS server certificates (on
AWS chained to Amazon Root CA 1). Clients of the bed's broker and HTTPS endpoints trust this CA's
certificate (``ca_certificate_pem()``) as their root CA instead of Amazon's.

Server certificates name every AWS IoT data and credentials endpoint host of the partition's regions as
wildcards (``*.iot.<region>.amazonaws.com``, ``*.credentials.iot.<region>.amazonaws.com``), which cover the
``<prefix>-ats.iot.<region>.amazonaws.com`` and ``<prefix>.credentials.iot.<region>.amazonaws.com``
addresses DescribeEndpoint returns, plus ``localhost`` and 127.0.0.1.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgeml test bed"),
        x509.NameAttribute(NameOID.COMMON_NAME, "edgeml local IoT CA (not Amazon)"),
    ]
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@functools.cache
def ca_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def ca_certificate() -> x509.Certificate:
    key = ca_key()
    return (
        x509.CertificateBuilder()
        .subject_name(CA_NAME)
        .issuer_name(CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )  # digitalSignature, keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def ca_certificate_pem() -> str:
    return ca_certificate().public_bytes(serialization.Encoding.PEM).decode("ascii")


def issue_device_certificate(csr: x509.CertificateSigningRequest) -> x509.Certificate:
    """A client certificate for the CSR's own public key (as CreateCertificateFromCsr issues)."""
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(CA_NAME)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key().public_key()), critical=False)
        .sign(ca_key(), hashes.SHA256())
    )


@functools.cache
def _iot_regions() -> tuple[str, ...]:
    import botocore.session

    return tuple(botocore.session.get_session().get_available_regions("iot"))


@functools.cache
def server_credentials() -> tuple[bytes, bytes]:
    """(certificate chain PEM, private key PEM) for the bed's TLS servers."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for region in _iot_regions():
        names.append(x509.DNSName("*.iot.%s.amazonaws.com" % region))
        names.append(x509.DNSName("*.credentials.iot.%s.amazonaws.com" % region))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "*.iot.amazonaws.com (edgeml test bed)")]))
        .issuer_name(CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key().public_key()), critical=False)
        .sign(ca_key(), hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_certificate().public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, key_pem
