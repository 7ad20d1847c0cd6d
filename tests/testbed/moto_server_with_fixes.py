"""Run moto's HTTP server with the test bed's documented fidelity fixes.

This file is test equipment: it is the process the test harness starts as the
local AWS-compatible endpoint. Product code never imports it and never knows
that the endpoint is moto.

Fix 1 - IoT CreateCertificateFromCsr (moto 5.2.x):
    moto signs a certificate for a *new random key* instead of the CSR's key,
    ignores ``setAsActive`` and never checks the CSR signature. AWS IoT issues
    the certificate for the CSR's public key, so a device checking that its
    certificate matches its private key would fail against stock moto. Here the
    certificate carries the CSR's public key, is signed by a per-process test
    CA, is ACTIVE when asked, and a CSR with a bad signature is rejected as AWS
    does (InvalidRequestException).

Usage: python -m tests.testbed.moto_server_with_fixes --host 127.0.0.1 --port PORT
"""

from __future__ import annotations

import argparse
import datetime
import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@functools.cache
def _test_ca_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


_TEST_CA_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgeml test bed"),
        x509.NameAttribute(NameOID.COMMON_NAME, "edgeml local IoT CA (not Amazon)"),
    ]
)


def issue_certificate_for_csr(csr_pem: str) -> str:
    """Return a PEM certificate for the CSR's own public key, or raise ValueError."""
    csr = x509.load_pem_x509_csr(csr_pem.encode("utf-8"))
    if not csr.is_signature_valid:
        raise ValueError("The CSR signature does not match its public key")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(_TEST_CA_NAME)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(_test_ca_key(), hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("utf-8")


def apply_fixes() -> None:
    from moto.iot.exceptions import InvalidRequestException
    from moto.iot.models import IoTBackend

    def create_certificate_from_csr(self, csr: str, set_as_active: bool):
        try:
            pem = issue_certificate_for_csr(csr)
        except ValueError as exc:
            raise InvalidRequestException(str(exc)) from exc
        return self.register_certificate(pem, ca_certificate_pem=None, set_as_active=set_as_active, status="INACTIVE")

    IoTBackend.create_certificate_from_csr = create_certificate_from_csr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    apply_fixes()
    from moto.server import main as moto_main

    moto_main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
