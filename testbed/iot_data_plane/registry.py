"""Who is calling, and may they: the AWS IoT registry (moto's, in this process) as the data plane reads it.

Test equipment shared by the bed's MQTT broker and its HTTPS data-plane endpoints: mutual TLS with the
server name (SNI) of the endpoint asked for, the client certificate looked up by its ID (SHA-256 of its
DER encoding) in the region of that endpoint and accepted only when registered and ACTIVE
(x509-client-certs.md, activate-or-deactivate-device-cert.md; AWS IoT Core developer guide), and the
policies attached to it evaluated by ``policy.py``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed.iot_data_plane import pki
from testbed.iot_data_plane.policy import Policy, PolicyError, RequestContext, evaluate, parse_policy

LOG = logging.getLogger("edgeml.testbed.iot_data_plane")
_SUBJECT_FIELDS = {"commonName": "CommonName", "organizationName": "Organization", "countryName": "Country"}


@dataclass
class Principal:
    """The registered certificate a connection authenticated with, and where it lives."""

    region: str
    account_id: str
    certificate_id: str
    certificate_arn: str
    subject: dict


class IotRegistry:
    """Read-only views of moto's IoT backends (this process), as the data plane needs them."""

    def __init__(self, account_id: str | None = None):
        from moto.core import DEFAULT_ACCOUNT_ID

        self.account_id = account_id or DEFAULT_ACCOUNT_ID

    def server_context(self, endpoint_host: re.Pattern) -> ssl.SSLContext:
        """A TLS server context: the bed's server certificate, a client certificate required, and a server
        name (SNI) that endpoint_host matches (its first group that matched is the region) - AWS refuses TLS
        without SNI (mqtt.md) and routes by it."""
        chain, key = pki.server_credentials()
        with tempfile.TemporaryDirectory() as folder:
            cert_file, key_file = Path(folder, "server.pem"), Path(folder, "server.key")
            cert_file.write_bytes(chain)
            key_file.write_bytes(key)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert_file, key_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        # Registered certificates need not chain to a CA the bed knows (RegisterCertificateWithoutCA):
        # each registered certificate is itself a trust anchor, and the registry decides after the handshake.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.load_verify_locations(cadata=pki.ca_certificate_pem())
        trusted: set[str] = set()  # this context's anchors (the broker and the HTTPS server each have one)

        def on_server_name(ssl_object, server_name, ctx):
            match = endpoint_host.match(server_name or "")
            if not match:
                LOG.info("TLS refused: server name %r is not this endpoint's host", server_name)
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            # The endpoint, and so the region, the client asked for.
            ssl_object.edgeml_server_name = server_name
            ssl_object.edgeml_region = next(group for group in match.groups() if group)
            for pem in self.registered_certificates_pem():
                if pem not in trusted:
                    ctx.load_verify_locations(cadata=pem)
                    trusted.add(pem)
            return None

        context.sni_callback = on_server_name
        return context

    def authenticate(self, ssl_object) -> Principal | None:
        """The registered, ACTIVE certificate the TLS peer presented, in the region it asked for; else None."""
        if ssl_object is None:
            return None
        der = ssl_object.getpeercert(binary_form=True)
        region = getattr(ssl_object, "edgeml_region", None)
        if der is None or region is None:
            return None
        certificate = self.certificate(region, der)
        if certificate is None:
            LOG.info("refused: certificate %s is not registered in %s", hashlib.sha256(der).hexdigest()[:12], region)
            return None
        if certificate.status != "ACTIVE":
            LOG.info("refused: certificate %s is %s", certificate.certificate_id[:12], certificate.status)
            return None
        return Principal(
            region=region,
            account_id=self.account_id,
            certificate_id=certificate.certificate_id,
            certificate_arn=certificate.arn,
            subject=_subject(ssl_object.getpeercert() or {}),
        )

    def backend(self, region: str):
        from moto.iot.models import iot_backends

        return iot_backends[self.account_id][region]

    def certificate(self, region: str, der: bytes):
        certificate_id = hashlib.sha256(der).hexdigest()
        return self.backend(region).certificates.get(certificate_id)

    def registered_certificates_pem(self) -> list[str]:
        from moto.iot.models import iot_backends

        pems = []
        for region, backend in list(iot_backends[self.account_id].items()):
            del region
            pems += [c.certificate_pem for c in list(backend.certificates.values())]
        return pems

    def policies(self, principal: Principal) -> list[Policy]:
        backend = self.backend(principal.region)
        parsed = []
        for (target, _name), (_principal, policy) in list(backend.principal_policies.items()):
            if target != principal.certificate_arn:
                continue
            try:
                parsed.append(parse_policy(policy.name, policy.document))
            except PolicyError as exc:
                # Never a silent allow: the operation is judged without this policy, and the reason logged.
                LOG.error(
                    "policy %s attached to %s is refused by the test bed: %s",
                    policy.name,
                    principal.certificate_id,
                    exc,
                )
        return parsed

    def attached_thing(self, principal: Principal, client_id: str | None) -> dict | None:
        """The thing named like the client ID (or the credential provider's thing-name header), if it is
        attached to the certificate (thing-policy-variables.md)."""
        if not client_id:
            return None
        backend = self.backend(principal.region)
        if (principal.certificate_arn, client_id) not in backend.principal_things:
            return None
        for thing in list(backend.things.values()):
            if thing.thing_name == client_id:
                thing_type = thing.thing_type.thing_type_name if thing.thing_type else None
                return {"name": thing.thing_name, "type": thing_type, "attributes": dict(thing.attributes)}
        return None

    def context(self, principal: Principal, client_id: str | None) -> RequestContext:
        certificate = {"Subject." + k: v for k, v in principal.subject.items()}
        return RequestContext(
            client_id=client_id, thing=self.attached_thing(principal, client_id), certificate=certificate
        )

    def authorize(self, principal: Principal, client_id: str | None, action: str, resource: str):
        """resource: an IoT resource (``client/...``, ``topic/...``) or a whole ARN (``arn:...``, or ``*``)."""
        arn = resource
        if not resource.startswith("arn:") and resource != "*":
            arn = "arn:aws:iot:%s:%s:%s" % (principal.region, principal.account_id, resource)
        decision = evaluate(self.policies(principal), action, arn, self.context(principal, client_id))
        if not decision.allowed:
            LOG.info("%s by %s (client %s): %s", action, principal.certificate_id[:12], client_id, decision.reason)
        return decision


def _subject(peer: dict) -> dict:
    fields = {}
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key in _SUBJECT_FIELDS:
                fields[_SUBJECT_FIELDS[key]] = value
    return fields
