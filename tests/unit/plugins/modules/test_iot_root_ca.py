"""Unit tests for iot_root_ca's verification, on the real Amazon roots shipped by Debian's ca-certificates."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.edgeml.greengrass.plugins.modules import iot_root_ca

MOZILLA = Path("/usr/share/ca-certificates/mozilla")
needs_debian_roots = pytest.mark.skipif(
    not (MOZILLA / "Amazon_Root_CA_1.crt").is_file(), reason="Debian's ca-certificates package is not installed"
)


@needs_debian_roots
@pytest.mark.parametrize("ca", ["1", "3"])
def test_pinned_fingerprints_match_debians_copies(ca):
    pem, seen = iot_root_ca.verified_pem((MOZILLA / f"Amazon_Root_CA_{ca}.crt").read_text(), ca, "debian")
    assert seen == iot_root_ca.AMAZON_ROOTS[ca]["sha256"]
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n")


@needs_debian_roots
def test_output_is_canonical_whatever_the_line_layout():
    text = (MOZILLA / "Amazon_Root_CA_1.crt").read_text()
    body = "".join(text.split("-----")[2].split())
    rewrapped = "junk before\n-----BEGIN CERTIFICATE-----\n" + body + "\n-----END CERTIFICATE-----\n"
    assert iot_root_ca.verified_pem(rewrapped, "1", "x")[0] == iot_root_ca.verified_pem(text, "1", "y")[0]


@needs_debian_roots
def test_another_root_is_refused_with_both_fingerprints():
    text = (MOZILLA / "Amazon_Root_CA_3.crt").read_text()
    with pytest.raises(iot_root_ca.NotVerified) as err:
        iot_root_ca.verified_pem(text, "1", "src.pem")
    message = str(err.value)
    assert "src.pem: this is not Amazon Root CA 1" in message
    assert iot_root_ca.AMAZON_ROOTS["3"]["sha256"] in message  # seen
    assert iot_root_ca.AMAZON_ROOTS["1"]["sha256"] in message  # expected


@needs_debian_roots
def test_two_certificates_are_refused():
    text = (MOZILLA / "Amazon_Root_CA_1.crt").read_text()
    with pytest.raises(iot_root_ca.NotVerified, match="exactly one PEM certificate, found 2"):
        iot_root_ca.verified_pem(text + text, "1", "bundle")


def test_no_certificate_is_refused():
    with pytest.raises(iot_root_ca.NotVerified, match="found 0"):
        iot_root_ca.verified_pem("<html>not found</html>", "1", "url")
