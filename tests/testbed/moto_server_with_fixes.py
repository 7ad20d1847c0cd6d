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

Fix 2 - Greengrass V1 definition reads (moto 5.2.x), see ``apply_greengrass_fixes``:
    a) CreateSubscriptionDefinitionVersion does not move the definition's
       ``LatestVersion``/``LatestVersionArn`` (AWS does, as moto already does for
       the other definition kinds);
    b) GetFunctionDefinitionVersion drops the ``DefaultConfig`` that was stored
       with the version (AWS returns it);
    c) ResetDeployments is unreachable: moto's URL rule for ``.../deployments/$reset``
       loses its ``$`` when turned into a Flask route, so every call is a 404.

Test-bed control - the device side of a Greengrass V1 deployment:
    Nothing plays a Greengrass core here, so stock moto reports every deployment
    as ``InProgress`` forever. A test can say what "the device" reports:

        POST /moto-api/static/greengrass/deployment-outcome
        {"status": "Success" | "Failure" | "InProgress",
         "group_version_id": "<id>",            # optional: only deployments of this version
         "error_message": "...", "error_details": [{"DetailedErrorCode": "...", "DetailedErrorMessage": "..."}],
         "region": "us-east-1"}                 # optional

    GetDeploymentStatus of a deployment that is still ``InProgress`` then takes
    the outcome set for its group version (else the default outcome, if any) and
    keeps it, as a real deployment's final state stays put. Without a control the
    behaviour is stock moto's. ``/moto-api/reset`` forgets the controls with the
    rest of the backend. Product code never uses this URL.

Emulation - Greengrass V2 (``greengrassv2``), which moto 5.2.x lacks:
    routes under ``/greengrass/v2/`` plus two test-bed controls, mounted by
    ``apply_greengrassv2_emulation``; what is and is not emulated is written at the
    top of ``tests/testbed/greengrassv2_emulation.py``.

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


_OUTCOMES_ATTR = "_testbed_deployment_outcomes"
_FINAL_STATUSES = ("Success", "Failure")


def _deployment_outcomes(backend) -> dict:
    """Per-backend (so reset clears them): {group_version_id or None: outcome dict}."""
    if not hasattr(backend, _OUTCOMES_ATTR):
        setattr(backend, _OUTCOMES_ATTR, {})
    return getattr(backend, _OUTCOMES_ATTR)


def apply_greengrass_fixes() -> None:
    import json

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.greengrass import models as gg_models
    from moto.greengrass import urls as gg_urls
    from moto.greengrass.responses import GreengrassResponse
    from moto.moto_api._internal import urls as moto_api_urls

    backend_cls = gg_models.GreengrassBackend

    # Fix 2a: the subscription definition's latest version follows new versions.
    original_create_sub_version = backend_cls.create_subscription_definition_version

    def create_subscription_definition_version(self, subscription_definition_id, subscriptions):
        version = original_create_sub_version(self, subscription_definition_id, subscriptions)
        definition = self.subscription_definitions[subscription_definition_id]
        definition.latest_version = version.version
        definition.latest_version_arn = version.arn
        return version

    backend_cls.create_subscription_definition_version = create_subscription_definition_version

    # Fix 2b: a function definition version reads back with its DefaultConfig.
    original_function_version_to_dict = gg_models.FakeFunctionDefinitionVersion.to_dict

    def function_version_to_dict(self):
        data = original_function_version_to_dict(self)
        if self.default_config:
            data["Definition"]["DefaultConfig"] = self.default_config
        return data

    gg_models.FakeFunctionDefinitionVersion.to_dict = function_version_to_dict

    # Fix 2c: a route that survives moto's regex-to-Flask conversion (which deletes every "$");
    # "." stands for the "$" of "$reset". Force is read from the body as AWS does.
    def reset_deployments(self):
        group_id = self.path.split("/")[-3]
        force = bool(self._get_param("Force", False))
        res = self.greengrass_backend.reset_deployments(group_id=group_id, force=force)
        return json.dumps(res.to_dict())

    GreengrassResponse.reset_deployments = reset_deployments
    gg_urls.url_paths["{0}/greengrass/groups/(?P<group_id>[^/]+)/deployments/(?P<reset_marker>.reset)$"] = (
        GreengrassResponse.dispatch
    )

    # Test-bed control: the device side's report on a deployment.
    original_get_status = backend_cls.get_deployment_status

    def get_deployment_status(self, group_id, deployment_id):
        status = original_get_status(self, group_id, deployment_id)
        deployment = self.deployments[deployment_id]
        outcomes = _deployment_outcomes(self)
        if deployment.deployment_status not in _FINAL_STATUSES:
            version_id = deployment.group_arn.rsplit("/", 1)[-1]
            outcome = outcomes.get(version_id) or outcomes.get(None)
            if outcome and outcome["status"] != deployment.deployment_status:
                deployment.deployment_status = outcome["status"]
                deployment.update_at_datetime = gg_models.utcnow()
                deployment.testbed_outcome = outcome
        status.deployment_status = deployment.deployment_status
        status.update_at_datetime = deployment.update_at_datetime
        status.testbed_outcome = getattr(deployment, "testbed_outcome", None)
        return status

    backend_cls.get_deployment_status = get_deployment_status

    original_status_to_dict = gg_models.FakeDeploymentStatus.to_dict

    def status_to_dict(self):
        data = original_status_to_dict(self)
        outcome = getattr(self, "testbed_outcome", None)
        if outcome and self.deployment_status == "Failure":
            data["ErrorMessage"] = outcome.get("error_message") or "Deployment failed (test bed)"
            data["ErrorDetails"] = outcome.get("error_details") or []
        return data

    gg_models.FakeDeploymentStatus.to_dict = status_to_dict

    def set_deployment_outcome(request, full_url, headers):
        body = json.loads(request.get_data(as_text=True) or "{}")
        status = body.get("status")
        if status not in ("Success", "Failure", "InProgress"):
            return 400, {}, json.dumps({"message": "status must be Success, Failure or InProgress"})
        backend = gg_models.greengrass_backends[body.get("account_id", DEFAULT_ACCOUNT_ID)][
            body.get("region", "us-east-1")
        ]
        _deployment_outcomes(backend)[body.get("group_version_id")] = {
            "status": status,
            "error_message": body.get("error_message"),
            "error_details": body.get("error_details"),
        }
        return 201, {}, ""

    moto_api_urls.url_paths["{0}/moto-api/static/greengrass/deployment-outcome"] = set_deployment_outcome


# --- Greengrass V2 emulation (owner: the greengrass_v2 modules' work; see greengrassv2_emulation.py) ---


def apply_greengrassv2_emulation() -> None:
    from tests.testbed.greengrassv2_emulation import install

    install()


# --- end of Greengrass V2 emulation ---


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    apply_fixes()
    apply_greengrass_fixes()
    apply_greengrassv2_emulation()
    from moto.server import main as moto_main

    moto_main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
