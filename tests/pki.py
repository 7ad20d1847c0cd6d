"""Test-only key material: self-signed certificates and PEM keys made with `cryptography`, for tests that need a
real certificate/key pair (the roles' credential checks, the stand-in cores). Nothing here is used outside tests."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID


def self_signed_certificate(key, common_name: str) -> bytes:
    """PEM of a certificate for key, signed by key itself, valid from yesterday for 30 days."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key, encryption=None) -> bytes:
    """PKCS#8 PEM of key, unencrypted unless an encryption (e.g. BestAvailableEncryption) is given."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption or serialization.NoEncryption()
    )
