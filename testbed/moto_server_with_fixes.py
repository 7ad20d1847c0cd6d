"""Run moto's HTTP server with the test bed's documented fidelity fixes.

This file is test equipment: it is the process the test harness starts as the
local AWS-compatible endpoint. Product code never imports it and never knows
that the endpoint is moto.

Fix 1 - IoT CreateCertificateFromCsr (moto 5.2.x):
    moto signs a certificate for a *new random key* instead of the CSR's key,
    reads ``setAsActive`` (a query string parameter) as text, so ``false`` made the certificate
    ACTIVE, and never checks the CSR signature. AWS IoT issues
    the certificate for the CSR's public key, so a device checking that its
    certificate matches its private key would fail against stock moto. Here the
    certificate carries the CSR's public key, is signed by a per-process test
    CA, is ACTIVE when asked, and a CSR with a bad signature is rejected as AWS
    does (InvalidRequestException).

Fix 1a - IoT certificate IDs (moto 5.2.x):
    moto's certificate ID is the SHA-256 of the PEM text unless its ``iot.use_valid_cert``
    setting is on; AWS's is the SHA-256 of the DER encoding (x509-client-certs.md), which is
    what the data plane's broker computes from the certificate a client presents. Turned on.

Fix 1b - IoT DescribeEndpoint (moto 5.2.x):
    moto makes up a new random endpoint address on every call; AWS gives each account one
    fixed address per endpoint type and region. With random addresses every provisioning
    run rewrites the devices' configuration (config.json's iotHost, config.yaml's endpoints),
    so nothing could be idempotent. Here each backend (account + region) keeps the address it
    first made for each type.

Fix 2 - Greengrass V1 definition reads (moto 5.2.x), see ``apply_greengrass_fixes``:
    a) CreateSubscriptionDefinitionVersion does not move the definition's
       ``LatestVersion``/``LatestVersionArn`` (AWS does, as moto already does for
       the other definition kinds);
    b) GetFunctionDefinitionVersion drops the ``DefaultConfig`` that was stored
       with the version (AWS returns it);
    c) ResetDeployments is unreachable: moto's URL rule for ``.../deployments/$reset``
       loses its ``$`` when turned into a Flask route, so every call is a 404;
    d) logger definitions are missing altogether (every ``*LoggerDefinition*`` call is a
       404, and a group version drops ``LoggerDefinitionVersionArn``). Added here with the
       same behaviour as moto's other definition kinds: create (with an initial version),
       list, get, delete, create/list/get versions, and group versions that keep the
       logger definition version ARN (an unknown one is refused as for the other kinds).
    e) CreateDeployment ignores ``X-Amzn-Client-Token``; the service model says "CreateDeployment requests are
       idempotent with respect to the X-Amzn-Client-Token token and the request parameters": a repeat with the
       same token and parameters now answers the first deployment (kept with the backend, so reset forgets it).
       The other V1 creates take the token only "to correlate requests and responses" (model): not idempotent.

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
    top of ``testbed/greengrassv2_emulation.py``.

Data plane - AWS IoT Core's MQTT broker (``--mqtt-port``): ``testbed/iot_data_plane/``
    runs in this process on its own thread and reads the same registry. Its address and the root
    CA its clients trust:

        GET /moto-api/static/iot-data-plane
        -> {"mqtt": {"host": "127.0.0.1", "port": N}, "credentials": {"host": "127.0.0.1", "port": M},
            "root_ca_pem": "-----BEGIN CERTIFICATE-----..."}

    and, on ``--credentials-port``, the HTTPS data plane told apart by TLS server name: the AWS IoT
    credential provider (``iot_data_plane/credentials.py``) and the Greengrass V2 data plane
    (``iot_data_plane/greengrass_data.py``) - ``"greengrass"`` in the answer above.

Fix 3 - IAM for the credential provider's credentials (moto 5.2.x), see ``apply_device_credential_authorization``:
    moto authorizes no request unless its ``INITIAL_NO_AUTH_ACTION_COUNT`` is set, and then all of them (the
    controller's too, with the bed's dummy keys). AWS authorizes every request: a device's token-exchange
    credentials (assumed-role keys of the role alias's role, authorizing-direct-aws.md) get only what that
    role's policies allow (IAM reference_policies_evaluation-logic.md), and a request whose SigV4 signature does
    not verify is refused (SignatureDoesNotMatch). Here every request signed with keys the bed's credential
    provider issued goes through moto's own IAM check (signature, then the role's inline and attached policies
    against the action and resource); every other request keeps moto's behaviour. Not emulated: resource
    policies (bucket policies), session policies, permission boundaries, SCPs.

Known gap, not fixed - IoT DeleteThing (moto 5.2.x):
    moto deletes the thing but leaves its name in each thing group's member list
    (ListThingsInThingGroup still returns it). What AWS does with the memberships of a deleted thing is not
    stated in the DeleteThing reference, so the bed does not pick an answer; the product removes a thing from its
    groups (RemoveThingFromThingGroup) before deleting it (iot_device_identity, state=absent), which is right
    either way.

Usage: python -m testbed.moto_server_with_fixes --host 127.0.0.1 --port PORT
           [--mqtt-port PORT [--credentials-port PORT]]
"""

from __future__ import annotations

import argparse
import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from testbed.iot_data_plane import pki
from testbed.iot_data_plane.greengrass_v1_data import FINAL_STATUSES, record_deployment_outcome


def issue_certificate_for_csr(csr_pem: str) -> str:
    """Return a PEM certificate for the CSR's own public key, or raise ValueError."""
    csr = x509.load_pem_x509_csr(csr_pem.encode("utf-8"))
    if not csr.is_signature_valid:
        raise ValueError("The CSR signature does not match its public key")
    return pki.issue_device_certificate(csr).public_bytes(serialization.Encoding.PEM).decode("utf-8")


def apply_fixes() -> None:
    from moto.core.config import default_user_config

    default_user_config.setdefault("iot", {})["use_valid_cert"] = True

    from moto.iot.exceptions import InvalidRequestException
    from moto.iot.models import IoTBackend

    def create_certificate_from_csr(self, csr: str, set_as_active):
        # moto's response handler passes the query string's text: "false" must mean false.
        set_as_active = str(set_as_active).lower() == "true"
        try:
            pem = issue_certificate_for_csr(csr)
        except ValueError as exc:
            raise InvalidRequestException(str(exc)) from exc
        return self.register_certificate(pem, ca_certificate_pem=None, set_as_active=set_as_active, status="INACTIVE")

    IoTBackend.create_certificate_from_csr = create_certificate_from_csr

    from moto.iot.models import FakeEndpoint

    def describe_endpoint(self, endpoint_type: str):
        addresses = self.__dict__.setdefault("_testbed_endpoints", {})
        if endpoint_type not in addresses:
            addresses[endpoint_type] = FakeEndpoint(endpoint_type, self.region_name)
        self.endpoint = addresses[endpoint_type]
        return self.endpoint

    IoTBackend.describe_endpoint = describe_endpoint


_OUTCOMES_ATTR = "_testbed_deployment_outcomes"
# Called with (account, region, deployment id) after a Greengrass V1 CreateDeployment made a deployment.
V1_DEPLOYMENT_LISTENERS: list = []


def _deployment_outcomes(backend) -> dict:
    """Per-backend (so reset clears them): {group_version_id or None: outcome dict}."""
    if not hasattr(backend, _OUTCOMES_ATTR):
        setattr(backend, _OUTCOMES_ATTR, {})
    return getattr(backend, _OUTCOMES_ATTR)


def apply_greengrass_fixes() -> None:
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

    _add_logger_definitions(gg_models, gg_urls, GreengrassResponse, json)

    # Fix 2e: CreateDeployment is idempotent with respect to the client token and the request parameters.
    original_create_deployment = GreengrassResponse.create_deployment

    # A deployment made (not a repeat answered from the token) is told to the group's core (the V1 data plane).
    def create_deployment(self):
        token = self.headers.get("X-Amzn-Client-Token")
        if token:
            key = (token, self.path.split("/")[-2], self.body if isinstance(self.body, str) else self.body.decode())
            answers = self.greengrass_backend.__dict__.setdefault("_testbed_idempotent_deployments", {})
            if key in answers:
                return answers[key]
        answer = original_create_deployment(self)  # moto's JSON answer; errors are raised
        if token:
            answers[key] = answer
        for listener in V1_DEPLOYMENT_LISTENERS:
            listener(self.current_account, self.region, json.loads(answer)["DeploymentId"])
        return answer

    GreengrassResponse.create_deployment = create_deployment

    # Test-bed control: the device side's report on a deployment.
    original_get_status = backend_cls.get_deployment_status

    def get_deployment_status(self, group_id, deployment_id):
        status = original_get_status(self, group_id, deployment_id)
        deployment = self.deployments[deployment_id]
        outcomes = _deployment_outcomes(self)
        if deployment.deployment_status not in FINAL_STATUSES:
            version_id = deployment.group_arn.rsplit("/", 1)[-1]
            outcome = outcomes.get(version_id) or outcomes.get(None)
            if outcome and outcome["status"] != deployment.deployment_status:
                record_deployment_outcome(deployment, outcome)
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
    from testbed.greengrassv2_emulation import install

    install()


# --- end of Greengrass V2 emulation ---


def _add_logger_definitions(gg_models, gg_urls, response_cls, json) -> None:
    """Fix 2d: Greengrass V1 logger definitions, shaped like moto's core definitions."""
    from moto.utilities.utils import get_partition

    backend_cls = gg_models.GreengrassBackend

    class LoggerDefinition:
        def __init__(self, account_id, region_name, name):
            self.id = str(gg_models.mock_random.uuid4())
            self.name = name
            self.arn = (
                f"arn:{get_partition(region_name)}:greengrass:{region_name}:{account_id}"
                f":greengrass/definition/loggers/{self.id}"
            )
            self.created = gg_models.utcnow()
            self.latest_version = ""
            self.latest_version_arn = ""

        def to_dict(self):
            stamp = gg_models.iso_8601_datetime_with_milliseconds(self.created)
            return {
                "Arn": self.arn,
                "CreationTimestamp": stamp,
                "Id": self.id,
                "LastUpdatedTimestamp": stamp,
                "LatestVersion": self.latest_version,
                "LatestVersionArn": self.latest_version_arn,
                "Name": self.name,
            }

    class LoggerDefinitionVersion:
        def __init__(self, definition, loggers):
            self.definition_id = definition.id
            self.loggers = loggers
            self.version = str(gg_models.mock_random.uuid4())
            self.arn = f"{definition.arn}/versions/{self.version}"
            self.created = gg_models.utcnow()

        def to_dict(self, include_detail=False):
            data = {
                "Arn": self.arn,
                "CreationTimestamp": gg_models.iso_8601_datetime_with_milliseconds(self.created),
                "Id": self.definition_id,
                "Version": self.version,
            }
            if include_detail:
                data["Definition"] = {"Loggers": self.loggers}
            return data

    def store(backend):
        if not hasattr(backend, "_testbed_logger_definitions"):
            backend._testbed_logger_definitions = {}
            backend._testbed_logger_versions = {}
        return backend._testbed_logger_definitions, backend._testbed_logger_versions

    def definition_or_404(backend, definition_id):
        definitions, _versions = store(backend)
        if definition_id not in definitions:
            raise gg_models.IdNotFoundException("That loggers definition does not exist.")
        return definitions[definition_id]

    def create_version(backend, definition_id, loggers):
        definition = definition_or_404(backend, definition_id)
        version = LoggerDefinitionVersion(definition, loggers or [])
        store(backend)[1].setdefault(definition_id, {})[version.version] = version
        definition.latest_version, definition.latest_version_arn = version.version, version.arn
        return version

    def logger_version_exists(backend, arn):
        _definitions, versions = store(backend)
        return any(version.arn == arn for by_id in versions.values() for version in by_id.values())

    def create_logger_definition(self):
        definition = LoggerDefinition(self.current_account, self.region, self._get_param("Name"))
        store(self.greengrass_backend)[0][definition.id] = definition
        initial = self._get_param("InitialVersion") or {}
        if "Loggers" in initial:
            create_version(self.greengrass_backend, definition.id, initial["Loggers"])
        return 201, {"status": 201}, json.dumps(definition.to_dict())

    def list_logger_definitions(self):
        definitions = store(self.greengrass_backend)[0].values()
        return json.dumps({"Definitions": [d.to_dict() for d in definitions]})

    def get_logger_definition(self):
        return json.dumps(definition_or_404(self.greengrass_backend, self.path.split("/")[-1]).to_dict())

    def delete_logger_definition(self):
        definition_id = self.path.split("/")[-1]
        definition_or_404(self.greengrass_backend, definition_id)
        definitions, versions = store(self.greengrass_backend)
        del definitions[definition_id]
        versions.pop(definition_id, None)
        return "{}"

    def create_logger_definition_version(self):
        version = create_version(self.greengrass_backend, self.path.split("/")[-2], self._get_param("Loggers"))
        return 201, {"status": 201}, json.dumps(version.to_dict())

    def list_logger_definition_versions(self):
        definition_id = self.path.split("/")[-2]
        definition_or_404(self.greengrass_backend, definition_id)
        versions = store(self.greengrass_backend)[1].get(definition_id, {}).values()
        return json.dumps({"Versions": [v.to_dict() for v in versions]})

    def get_logger_definition_version(self):
        definition_id, version_id = self.path.split("/")[-3], self.path.split("/")[-1]
        definition_or_404(self.greengrass_backend, definition_id)
        versions = store(self.greengrass_backend)[1].get(definition_id, {})
        if version_id not in versions:
            raise gg_models.VersionNotFoundException(
                f"Version {version_id} of Logger List Definition {definition_id} does not exist."
            )
        return json.dumps(versions[version_id].to_dict(include_detail=True))

    for handler in (
        create_logger_definition,
        list_logger_definitions,
        get_logger_definition,
        delete_logger_definition,
        create_logger_definition_version,
        list_logger_definition_versions,
        get_logger_definition_version,
    ):
        setattr(response_cls, handler.__name__, handler)
    base = "{0}/greengrass/definition/loggers"
    for suffix in ("$", "/(?P<definition_id>[^/]+)/?$", "/(?P<definition_id>[^/]+)/versions$"):
        gg_urls.url_paths[base + suffix] = response_cls.dispatch
    gg_urls.url_paths[base + "/(?P<definition_id>[^/]+)/versions/(?P<definition_version_id>[^/]+)/?$"] = (
        response_cls.dispatch
    )

    # Group versions keep the logger definition version ARN.
    def check_logger_arn(backend, arn):
        if arn and not logger_version_exists(backend, arn):
            raise gg_models.GreengrassClientError(
                "400", "The group is invalid or corrupted. (ErrorDetails: [Logger definition reference does not exist])"
            )

    original_create_group = backend_cls.create_group

    def create_group(self, name, initial_version):
        arn = (initial_version or {}).get("LoggerDefinitionVersionArn")
        check_logger_arn(self, arn)
        group = original_create_group(self, name, initial_version)
        self.group_versions[group.group_id][group.latest_version].logger_definition_version_arn = arn
        return group

    backend_cls.create_group = create_group

    original_create_group_version_response = response_cls.create_group_version

    def create_group_version(self):
        arn = self._get_param("LoggerDefinitionVersionArn")
        check_logger_arn(self.greengrass_backend, arn)
        status, headers, body = original_create_group_version_response(self)
        data = json.loads(body)
        self.greengrass_backend.group_versions[data["Id"]][data["Version"]].logger_definition_version_arn = arn
        return status, headers, body

    response_cls.create_group_version = create_group_version

    original_group_version_to_dict = gg_models.FakeGroupVersion.to_dict

    def group_version_to_dict(self, include_detail=False):
        data = original_group_version_to_dict(self, include_detail=include_detail)
        arn = getattr(self, "logger_definition_version_arn", None)
        if include_detail and arn:
            data["Definition"]["LoggerDefinitionVersionArn"] = arn
        return data

    gg_models.FakeGroupVersion.to_dict = group_version_to_dict


def start_data_plane(host: str, mqtt_port: int, credentials_port: int | None) -> None:
    """The MQTT broker (with the IoT Jobs and Greengrass telemetry services behind its reserved topics) and the
    HTTPS data plane (credential provider, Greengrass data plane) on their threads, and the control route that
    says where they listen."""
    import logging

    from moto.moto_api._internal import urls as moto_api_urls

    from testbed import greengrassv2_emulation
    from testbed.iot_data_plane import credentials, greengrass_data, greengrass_v1_data
    from testbed.iot_data_plane.broker import MqttDataPlane
    from testbed.iot_data_plane.https import HttpsDataPlane
    from testbed.iot_data_plane.jobs import JobsService
    from testbed.iot_data_plane.registry import LOG, IotRegistry

    # Every refusal (and why) goes to the endpoint's log, where a failing test's reader looks.
    LOG.setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("iot-data-plane: %(message)s"))
    LOG.addHandler(handler)
    registry = IotRegistry()
    jobs = JobsService(registry, greengrassv2_emulation.DeploymentJobs)
    greengrass_v1 = greengrass_v1_data.GreengrassV1DataPlane(registry)
    data_plane = MqttDataPlane(
        host,
        mqtt_port,
        registry,
        on_publish=[greengrassv2_emulation.on_health_message, jobs.on_publish, greengrass_v1.on_publish],
    ).start()
    greengrass_v1.publish = data_plane.broker.publish_threadsafe
    V1_DEPLOYMENT_LISTENERS.append(greengrass_v1.deployment_created)

    class JobNotifications:
        """Greengrass deployments created through the API reach connected devices as job notifications."""

        first_pending = staticmethod(jobs.first_pending)

        @staticmethod
        def jobs_changed(region, thing, first_before):
            for message in jobs.notify(region, thing, first_before):
                data_plane.broker.publish_threadsafe(message.topic, message.payload)

    greengrassv2_emulation.JOB_LISTENERS.append(JobNotifications)
    info = data_plane.info()
    if credentials_port:
        provider = credentials.CredentialProvider(registry)
        greengrass = greengrass_data.GreengrassDataPlane(registry, greengrassv2_emulation.ComponentCatalog)
        routes = [
            (credentials.CREDENTIALS_HOST, "GET", credentials.PATH, provider.handle),
            (greengrass_data.GREENGRASS_HOST, "POST", greengrass_data.RESOLVE_PATH, greengrass.resolve),
            (greengrass_data.GREENGRASS_HOST, "GET", greengrass_data.ARTIFACT_PATH, greengrass.artifact),
            *greengrass_v1.routes(greengrass_data.GREENGRASS_HOST),
        ]
        HttpsDataPlane(host, credentials_port, registry, routes).start()
        # One HTTPS port, told apart by the TLS server name as AWS's hosts are.
        info["credentials"] = info["greengrass"] = {"host": host, "port": credentials_port}

    def describe_data_plane(request, full_url, headers):
        return 200, {"Content-Type": "application/json"}, json.dumps(info)

    moto_api_urls.url_paths["{0}/moto-api/static/iot-data-plane"] = describe_data_plane


def apply_device_credential_authorization() -> None:
    """Fix 3: moto's IAM check for every request signed with credentials the credential provider issued."""
    import re
    from urllib.parse import urlparse

    from moto.core.authorization import ActionAuthenticatorMixin

    from testbed.iot_data_plane.credentials import ISSUED_ACCESS_KEYS

    original = ActionAuthenticatorMixin._authenticate_and_authorize_action
    credential = re.compile(r"Credential=([A-Z0-9]+)/")

    def authenticate_and_authorize(self, iam_request_cls, resource="*"):
        found = credential.search(self.headers.get("Authorization") or "")
        if not found or found.group(1) not in ISSUED_ACCESS_KEYS:
            return original(self, iam_request_cls, resource)
        parsed_url = urlparse(self.uri)
        path = self.raw_path + ("?" + parsed_url.query if parsed_url.query else "")
        iam_request = iam_request_cls(
            account_id=self.current_account,
            method=self.method,
            path=path,
            data=self.data,
            body=self.raw_body,
            headers=self.headers,
            action=self._get_action(),
        )
        iam_request.check_signature()
        iam_request.check_action_permitted(resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authenticate_and_authorize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mqtt-port", type=int, default=None, help="AWS IoT Core MQTT broker (TLS); none if unset")
    parser.add_argument("--credentials-port", type=int, default=None, help="AWS IoT credential provider (HTTPS)")
    args = parser.parse_args()
    apply_fixes()
    apply_greengrass_fixes()
    apply_greengrassv2_emulation()
    apply_device_credential_authorization()
    if args.mqtt_port:
        start_data_plane(args.host, args.mqtt_port, args.credentials_port)
    from moto.server import main as moto_main

    moto_main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
