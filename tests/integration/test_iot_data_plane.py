"""Greengrass V2 core identities, as the collection makes them, against the test bed's AWS IoT Core data plane.

The identities come from the product module ``iot_device_identity`` with the options
``playbooks/provision_greengrass_v2.yml`` gives it (V2 core policy, the fleet's thing group, the token
exchange role alias, the host's and the detector's topic prefixes); each "device" makes its own key and
CSR. Real MQTT clients (paho-mqtt, MQTT 3.1.1 over mutual TLS) then connect to the bed's broker with those
certificates and exercise each permission of AWS's minimal V2 core policy that is an MQTT operation; the
others (role alias, Greengrass data-plane actions) are evaluated on the policy read back from the endpoint,
since the bed has no credential provider or Greengrass data plane yet. Negative cases: a policy statement
removed, an INACTIVE certificate, an unregistered one, another thing's certificate, no or a wrong TLS
server name, and policies the bed cannot evaluate.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testbed.iot_data_plane.client import DataPlaneClient
from testbed.iot_data_plane.policy import RequestContext, evaluate, parse_policy
from tests.pki import private_key_pem, self_signed_certificate
from tests.roles.playbook_json import localhost_inventory, run_playbook

pytestmark = pytest.mark.aws

ALIAS = "GreengrassV2TokenExchangeRoleAlias"
THING_GROUP = "edgeml-detectors"
ACCOUNT_ARN = "arn:aws:iot:us-east-1:123456789012:"


class Device:
    """One simulated core's files on the controller (the test plays the device that made its key)."""

    def __init__(self, folder: Path, thing: str):
        self.thing = thing
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.key_file = folder / "device.private.key"
        self.key_file.write_bytes(private_key_pem(self.key))
        self.key_file.chmod(0o600)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)])
        self.csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(name)
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
        self.cert_file = folder / "device.cert.pem"
        self.certificate_id = ""
        self.certificate_arn = ""
        self.policy_name = ""


@pytest.fixture
def data_plane(clean_aws, aws_client, tmp_path):
    info = clean_aws.data_plane()
    root_ca = tmp_path / "root.ca.pem"
    root_ca.write_text(info["root_ca_pem"])
    host = aws_client("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    return {"info": info, "root_ca": str(root_ca), "host": host, "endpoint": clean_aws}


def make_identities(data_plane, tmp_path: Path, things: tuple[str, ...], generation: str) -> dict[str, Device]:
    """Identities from iot_device_identity with the options the provisioning play of that generation passes:
    provision_greengrass_v2.yml (V2 core policy, thing group, token exchange alias) or provision_greengrass_v1.yml
    (the module's V1 core default)."""
    env = data_plane["endpoint"].environment()
    devices = {thing: Device(tmp_path / thing, thing) for thing in things}
    options = {
        "thing_name": "{{ inventory_hostname }}",
        "csr": "{{ csr }}",
        "topic_prefixes": ["{{ inventory_hostname }}/", "blog/infer/"],
    }
    if generation == "v2":
        options.update(
            thing_groups=[THING_GROUP],
            create_thing_groups=True,
            greengrass_v1_core=False,
            greengrass_v2_core=True,
            token_exchange_role_aliases=[ALIAS],
        )
    playbook = tmp_path / ("identity-%s.yml" % generation)
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Identity of a Greengrass %s core, as its provisioning play makes it" % generation,
                    "hosts": "all",
                    "gather_facts": False,
                    "module_defaults": {"group/edgeml.greengrass.aws": data_plane["endpoint"].module_options()},
                    "tasks": [
                        {
                            "name": "Thing, certificate from the device's CSR, core policy",
                            "edgeml.greengrass.iot_device_identity": options,
                            "register": "identity",
                        },
                        {
                            "name": "Keep the result for the test",
                            "ansible.builtin.copy": {
                                "content": "{{ identity | to_json }}",
                                "dest": "{{ result_file }}",
                                "mode": "0644",
                            },
                        },
                    ],
                }
            ],
            sort_keys=False,
        )
    )
    hosts = {
        thing: {"csr": device.csr, "result_file": str(device.folder / "identity.json")}
        for thing, device in devices.items()
    }
    run = run_playbook(playbook, localhost_inventory(tmp_path, hosts), env=env, timeout=300)
    assert run.returncode == 0, run.describe()
    for device in devices.values():
        identity = json.loads((device.folder / "identity.json").read_text())
        device.cert_file.write_text(identity["certificate"]["pem"])
        device.certificate_id = identity["certificate"]["id"]
        device.certificate_arn = identity["certificate"]["arn"]
        device.policy_name = identity["policy"]["name"]
    return devices


@pytest.fixture
def cores(data_plane, tmp_path):
    """core-1 and core-2, each with the identity provision_greengrass_v2.yml makes for a V2 core."""
    return make_identities(data_plane, tmp_path, ("core-1", "core-2"), "v2")


def client(data_plane, device: Device, client_id: str | None = None, server_name: str | None = None):
    return DataPlaneClient(
        data_plane["info"],
        data_plane["host"] if server_name is None else server_name,
        client_id or device.thing,
        str(device.cert_file),
        str(device.key_file),
        data_plane["root_ca"],
        timeout=5,
    )


def connected(data_plane, device, client_id=None):
    c = client(data_plane, device, client_id)
    outcome = c.connect()
    assert outcome.ok, "%s could not connect as %s: %s" % (device.thing, client_id or device.thing, outcome)
    return c


def test_v2_core_exercises_every_mqtt_permission_of_the_documented_policy(data_plane, cores):
    core = cores["core-1"]
    jobs = "$aws/things/core-1/jobs/"
    shadow = "$aws/things/core-1/shadow/"
    main = connected(data_plane, core)
    # The nucleus opens more connections with the thing name and a "#<n>" suffix: both at once.
    second = connected(data_plane, core, "core-1#2")
    try:
        for topic_filter in (jobs + "notify-next", jobs + "$next/get/accepted", jobs + "+/update/accepted"):
            outcome = second.subscribe(topic_filter)
            assert outcome.ok, (topic_filter, outcome)
        for topic_filter in (shadow + "get/accepted", "blog/infer/input"):
            assert main.subscribe(topic_filter).ok, topic_filter
        # Publish and Receive on the jobs, health, shadow and detector topics; delivery proves Receive.
        for topic, receiver in (
            (jobs + "notify-next", second),
            (jobs + "$next/get/accepted", second),
            (jobs + "job-42/update/accepted", second),
            (shadow + "get/accepted", main),
            ("blog/infer/input", main),
        ):
            assert second.publish(topic, b'{"n": 1}').ok if receiver is main else main.publish(topic, b"{}").ok, topic
            message = receiver.receive()
            assert message is not None and message[0] == topic, (topic, message)
        for topic in (
            "$aws/things/core-1/greengrass/health/json",
            "$aws/things/core-1/greengrassv2/health/json",
            jobs + "$next/get",
            jobs + "job-42/update",
            shadow + "get",
            "blog/infer/output",
            "core-1/telemetry",
        ):
            outcome = main.publish(topic, b"{}")
            assert outcome.ok, (topic, outcome)
        assert not main.disconnected and not second.disconnected
    finally:
        main.close()
        second.close()


def test_v2_core_policy_as_attached_grants_the_non_mqtt_permissions(aws_client, cores):
    # No credential provider or Greengrass data plane in the bed yet: the attached policy is evaluated.
    iot = aws_client("iot")
    core = cores["core-1"]
    attached = [p["policyName"] for p in iot.list_attached_policies(target=core.certificate_arn)["policies"]]
    assert attached == [core.policy_name]
    policy = parse_policy(core.policy_name, iot.get_policy(policyName=core.policy_name)["policyDocument"])
    context = RequestContext(client_id="core-1", thing={"name": "core-1"})
    gg = "arn:aws:greengrass:us-east-1:123456789012:"
    for action, resource in (
        ("iot:AssumeRoleWithCertificate", ACCOUNT_ARN + "rolealias/" + ALIAS),
        ("greengrass:GetComponentVersionArtifact", gg + "components:com.edgeml.ObjectDetector:versions:1.0.0"),
        ("greengrass:ResolveComponentCandidates", "*"),
        ("greengrass:GetDeploymentConfiguration", "*"),
        ("greengrass:ListThingGroupsForCoreDevice", "*"),
        ("iot:GetThingShadow", ACCOUNT_ARN + "thing/core-1"),
    ):
        assert evaluate([policy], action, resource, context).allowed, action
    assert not evaluate([policy], "iot:AssumeRoleWithCertificate", ACCOUNT_ARN + "rolealias/Admin", context).allowed


def _without(document: dict, action: str, resource_part: str) -> dict:
    """The document with every resource containing resource_part removed from statements granting action."""
    changed = json.loads(json.dumps(document))
    for statement in changed["Statement"]:
        if action in statement["Action"]:
            statement["Resource"] = [r for r in statement["Resource"] if resource_part not in r]
    changed["Statement"] = [s for s in changed["Statement"] if s["Resource"]]
    return changed


@pytest.mark.parametrize(
    "action, resource_part, operation",
    [
        ("iot:Subscribe", "jobs/*", ("subscribe", "$aws/things/core-1/jobs/notify-next")),
        ("iot:Publish", "greengrassv2/health/json", ("publish", "$aws/things/core-1/greengrassv2/health/json")),
        ("iot:Connect", "client/core-1#*", ("connect", "core-1#2")),
    ],
)
def test_removing_a_statement_refuses_the_matching_operation(
    data_plane, cores, aws_client, action, resource_part, operation
):
    iot = aws_client("iot")
    core = cores["core-1"]
    kind, target = operation
    document = json.loads(iot.get_policy(policyName=core.policy_name)["policyDocument"])
    iot.create_policy_version(
        policyName=core.policy_name,
        policyDocument=json.dumps(_without(document, action, resource_part)),
        setAsDefault=True,
    )
    if kind == "connect":
        assert not client(data_plane, core, target).connect().ok
        return
    c = connected(data_plane, core)
    try:
        if kind == "subscribe":
            outcome = c.subscribe(target)
            assert not outcome.ok and outcome.codes == [0x80], outcome
            assert c.subscribe("$aws/things/core-1/shadow/get/accepted").ok  # the rest still works
        else:
            outcome = c.publish(target, b"{}")
            assert not outcome.ok and c.wait_disconnected(), outcome  # AWS closes the connection, no PUBACK
    finally:
        c.close()


def test_inactive_certificate_cannot_connect_and_reactivated_can(data_plane, cores, aws_client):
    iot = aws_client("iot")
    core = cores["core-1"]
    iot.update_certificate(certificateId=core.certificate_id, newStatus="INACTIVE")
    outcome = client(data_plane, core).connect()
    assert not outcome.ok and outcome.codes == [135], outcome  # CONNACK "not authorized"
    iot.update_certificate(certificateId=core.certificate_id, newStatus="ACTIVE")
    connected(data_plane, core).close()


def test_unregistered_certificate_cannot_connect(data_plane, cores, tmp_path):
    stranger = Device(tmp_path / "stranger", "core-1")
    stranger.cert_file.write_bytes(self_signed_certificate(stranger.key, "core-1"))
    assert not client(data_plane, stranger).connect().ok


def test_another_things_certificate_cannot_use_this_things_client_id_or_topics(data_plane, cores):
    legit = connected(data_plane, cores["core-1"])
    try:
        assert legit.subscribe("$aws/things/core-1/jobs/notify-next").ok
        impostor = client(data_plane, cores["core-2"], "core-1")
        outcome = impostor.connect()
        assert not outcome.ok and outcome.codes == [135], outcome
        # The refused CONNECT with its client ID did not take core-1's connection over.
        assert not legit.disconnected and legit.publish("core-1/still-here", b"1").ok
        other = connected(data_plane, cores["core-2"])
        try:
            outcome = other.subscribe("$aws/things/core-1/jobs/notify-next")
            assert not outcome.ok and outcome.codes == [0x80], outcome
            assert not other.publish("$aws/things/core-1/greengrassv2/health/json", b"{}").ok
            assert other.wait_disconnected()
        finally:
            other.close()
    finally:
        legit.close()


@pytest.mark.parametrize("server_name", ["localhost", "example.com"])
def test_tls_without_the_endpoint_server_name_is_refused(data_plane, cores, server_name):
    # "localhost" is in the bed's server certificate, so only the SNI rule can refuse it.
    assert not client(data_plane, cores["core-1"], server_name=server_name).connect().ok


@pytest.mark.parametrize(
    "statement",
    [
        {
            "Effect": "Allow",
            "Action": "iot:*",
            "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1"}},
        },
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": ACCOUNT_ARN + "client/${iot:UnknownVariable}"},
    ],
    ids=["unemulated-condition", "unknown-variable"],
)
def test_policy_the_bed_cannot_evaluate_never_allows(data_plane, cores, aws_client, statement):
    iot = aws_client("iot")
    core = cores["core-2"]
    iot.detach_policy(policyName=core.policy_name, target=core.certificate_arn)
    iot.create_policy(
        policyName="unevaluable", policyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    )
    iot.attach_policy(policyName="unevaluable", target=core.certificate_arn)
    assert not client(data_plane, core).connect().ok
    log = Path(data_plane["endpoint"].log_path).read_text()
    assert "policy unevaluable attached to %s is refused by the test bed" % core.certificate_id in log


# --- the credential provider (the nucleus's token exchange) -----------------------------------------------

TRUST_CREDENTIAL_PROVIDER = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "credentials.iot.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@pytest.fixture
def token_exchange(aws_client):
    """The token exchange role and its alias, as the V2 detector role makes them (role trusts the provider)."""
    iam, iot = aws_client("iam"), aws_client("iot")
    role = iam.create_role(
        RoleName="GreengrassV2TokenExchangeRole", AssumeRolePolicyDocument=json.dumps(TRUST_CREDENTIAL_PROVIDER)
    )["Role"]
    iot.create_role_alias(roleAlias=ALIAS, roleArn=role["Arn"], credentialDurationSeconds=3600)
    return role


def raw_https(data_plane, device: Device, host: str, method: str, path: str, body: bytes | None = None, headers=None):
    """(status, raw body) of one request with the device's certificate (the V1 data plane answers artifacts as
    bytes)."""
    import http.client
    import socket
    import ssl

    address = data_plane["info"]["credentials"]
    context = ssl.create_default_context(cafile=data_plane["root_ca"])
    context.load_cert_chain(device.cert_file, device.key_file)
    raw = socket.create_connection((address["host"], address["port"]), timeout=10)
    try:
        connection = http.client.HTTPSConnection(host, timeout=10)
        connection.sock = context.wrap_socket(raw, server_hostname=host)
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        raw.close()


def https_request(data_plane, device: Device, host: str, method: str, path: str, body=None, headers=None):
    """One HTTPS request with the device's certificate to an AWS IoT host name, sent to the bed's port; JSON both
    ways. A refused handshake or a dropped connection is (None, its message)."""
    import ssl

    payload = json.dumps(body).encode() if body is not None else None
    try:
        status, answer = raw_https(data_plane, device, host, method, path, payload, headers)
    except (ssl.SSLError, ConnectionError) as exc:
        return None, {"message": str(exc)}
    return status, json.loads(answer or b"{}")


def credentials_request(data_plane, aws_client, device: Device, alias: str, thing_name: str | None):
    """GET /role-aliases/<alias>/credentials with the device's certificate, as the nucleus sends it."""
    host = aws_client("iot").describe_endpoint(endpointType="iot:CredentialProvider")["endpointAddress"]
    headers = {"x-amzn-iot-thingname": thing_name} if thing_name else {}
    return https_request(data_plane, device, host, "GET", "/role-aliases/%s/credentials" % alias, headers=headers)


def client_with(data_plane, service: str, credentials: dict):
    """A boto3 client of the bed's endpoint signing with credentials the credential provider issued."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=data_plane["endpoint"].url,
        region_name="us-east-1",
        aws_access_key_id=credentials["accessKeyId"],
        aws_secret_access_key=credentials["secretAccessKey"],
        aws_session_token=credentials["sessionToken"],
    )


def test_core_exchanges_its_certificate_for_the_alias_role_credentials(data_plane, cores, aws_client, token_exchange):
    status, body = credentials_request(data_plane, aws_client, cores["core-1"], ALIAS, "core-1")
    assert status == 200, body
    credentials = body["credentials"]
    assert set(credentials) == {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}
    # The local endpoint takes them, and they are the token exchange role's.
    sts = client_with(data_plane, "sts", credentials)
    assert ":assumed-role/GreengrassV2TokenExchangeRole/" in sts.get_caller_identity()["Arn"]


def test_device_credentials_get_only_what_the_role_allows_and_need_a_valid_signature(
    data_plane, cores, aws_client, token_exchange
):
    """The endpoint authorizes requests signed with the provider's credentials with the role's IAM policies (as
    AWS does; moto alone authorizes nothing): the detector's artifact prefix is readable, the rest is not, and
    the stand-in nucleus's own SigV4 signer is accepted while a wrong signature is refused."""
    import urllib.error
    import urllib.request

    import botocore.exceptions

    from testbed.standins.greengrass_v2_nucleus.agent import recipes

    s3 = aws_client("s3")
    s3.create_bucket(Bucket="artifacts")
    for key in ("greengrass/detector/code.zip", "elsewhere/secret.txt"):
        s3.put_object(Bucket="artifacts", Key=key, Body=key.encode())
    read_artifacts = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::artifacts/greengrass/*"}],
    }
    aws_client("iam").put_role_policy(
        RoleName=token_exchange["RoleName"], PolicyName="read-artifacts", PolicyDocument=json.dumps(read_artifacts)
    )
    status, body = credentials_request(data_plane, aws_client, cores["core-1"], ALIAS, "core-1")
    assert status == 200, body
    credentials = body["credentials"]
    device_s3 = client_with(data_plane, "s3", credentials)
    got = device_s3.get_object(Bucket="artifacts", Key="greengrass/detector/code.zip")["Body"].read()
    assert got == b"greengrass/detector/code.zip"
    for call in (
        lambda: device_s3.get_object(Bucket="artifacts", Key="elsewhere/secret.txt"),
        lambda: device_s3.put_object(Bucket="artifacts", Key="greengrass/detector/code.zip", Body=b"x"),
        lambda: device_s3.list_objects_v2(Bucket="artifacts"),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    # The controller's own calls (the bed's dummy keys) are not affected.
    assert s3.get_object(Bucket="artifacts", Key="elsewhere/secret.txt")["Body"].read() == b"elsewhere/secret.txt"

    url = recipes.s3_object_url(data_plane["endpoint"].url, "s3://artifacts/greengrass/detector/code.zip")
    signed = recipes.sigv4_headers("GET", url, credentials, "us-east-1")
    with urllib.request.urlopen(urllib.request.Request(url, headers=signed), timeout=10) as answer:  # noqa: S310
        assert answer.read() == b"greengrass/detector/code.zip"
    forged = recipes.sigv4_headers("GET", url, dict(credentials, secretAccessKey="not-the-secret"), "us-east-1")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, headers=forged), timeout=10)  # noqa: S310
    assert refused.value.code == 403 and b"SignatureDoesNotMatch" in refused.value.read()


def test_credential_provider_refuses_what_aws_refuses(data_plane, cores, aws_client, token_exchange):
    iam, iot = aws_client("iam"), aws_client("iot")
    core = cores["core-1"]
    # An alias the device's policy does not name.
    other = iam.create_role(RoleName="Admin", AssumeRolePolicyDocument=json.dumps(TRUST_CREDENTIAL_PROVIDER))["Role"]
    iot.create_role_alias(roleAlias="AdminAlias", roleArn=other["Arn"])
    assert credentials_request(data_plane, aws_client, core, "AdminAlias", "core-1")[0] == 403
    # A thing name that is not the certificate's thing (authorizing-direct-aws.md: 403).
    assert credentials_request(data_plane, aws_client, core, ALIAS, "core-2")[0] == 403
    # A role that does not trust the credential provider.
    untrusting = iam.create_role(
        RoleName="NoTrust",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]
    iot.update_role_alias(roleAlias=ALIAS, roleArn=untrusting["Arn"])
    assert credentials_request(data_plane, aws_client, core, ALIAS, "core-1")[0] == 403
    iot.update_role_alias(roleAlias=ALIAS, roleArn=token_exchange["Arn"])
    # An INACTIVE certificate.
    iot.update_certificate(certificateId=core.certificate_id, newStatus="INACTIVE")
    assert credentials_request(data_plane, aws_client, core, ALIAS, "core-1")[0] != 200
    iot.update_certificate(certificateId=core.certificate_id, newStatus="ACTIVE")
    assert credentials_request(data_plane, aws_client, core, ALIAS, "core-1")[0] == 200


# --- Greengrass's health telemetry registers the core device ------------------------------------------------


def health(thing: str, status: str) -> bytes:
    """A fleet status message as the nucleus's FleetStatusService sends it (FleetStatusDetails fields)."""
    return json.dumps(
        {
            "ggcVersion": "2.14.3",
            "platform": "linux",
            "architecture": "aarch64",
            "runtime": "aws_nucleus_classic",
            "thing": thing,
            "overallDeviceStatus": status,
            "sequenceNumber": 1,
            "timestamp": 1764748800000,
            "messageType": "COMPLETE",
            "trigger": "NUCLEUS_LAUNCH",
            "components": [],
        }
    ).encode()


def core_device_once(greengrass, thing: str, done, timeout: float = 15.0) -> dict:
    """The core device as soon as ``done(device)`` holds. The service registers a core device from its health
    message after the broker has acknowledged the publish (the PUBACK does not wait for it), and so does the bed:
    a read right after the PUBACK may still see the state before."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            device = greengrass.get_core_device(coreDeviceThingName=thing)
        except greengrass.exceptions.ResourceNotFoundException:
            device = {}
        if done(device) or time.monotonic() > deadline:
            return device
        time.sleep(0.1)


def test_health_messages_register_and_update_the_core_device(data_plane, cores, aws_client):
    greengrass = aws_client("greengrassv2")
    core = connected(data_plane, cores["core-1"])
    try:
        topic = "$aws/things/core-1/greengrassv2/health/json"
        assert core.publish(topic, health("core-1", "HEALTHY")).ok
        device = core_device_once(greengrass, "core-1", lambda device: device.get("status") == "HEALTHY")
        assert (device["status"], device["coreVersion"], device["architecture"]) == ("HEALTHY", "2.14.3", "aarch64")
        assert core.publish(topic, health("core-1", "UNHEALTHY")).ok
        device = core_device_once(greengrass, "core-1", lambda device: device.get("status") == "UNHEALTHY")
        assert device["status"] == "UNHEALTHY"
        # A message naming another thing, or not a nucleus's, changes nothing. The broker handles one client's
        # messages in order, services included, so once the client receives its own later message on a topic it
        # subscribed to, those two have been handled.
        assert core.subscribe("blog/infer/input").ok
        assert core.publish(topic, health("core-2", "HEALTHY")).ok
        assert core.publish(topic, b"not json").ok
        assert core.publish("blog/infer/input", b'{"barrier": 1}').ok
        assert core.receive() == ("blog/infer/input", b'{"barrier": 1}')
        assert greengrass.get_core_device(coreDeviceThingName="core-1")["status"] == "UNHEALTHY"
        names = [d["coreDeviceThingName"] for d in greengrass.list_core_devices()["coreDevices"]]
        assert names == ["core-1"]
    finally:
        core.close()


# --- Greengrass V2 deployments reach the device as IoT jobs --------------------------------------------------

RECIPE = {
    "RecipeFormatVersion": "2020-01-25",
    "ComponentName": "com.example.Hello",
    "ComponentVersion": "1.0.0",
    "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"run": "echo hello"}}],
}


def deploy(aws_client, version: str) -> dict:
    greengrass, iot = aws_client("greengrassv2"), aws_client("iot")
    recipe = dict(RECIPE, ComponentVersion=version)
    greengrass.create_component_version(inlineRecipe=json.dumps(recipe).encode())
    group_arn = iot.describe_thing_group(thingGroupName=THING_GROUP)["thingGroupArn"]
    return greengrass.create_deployment(
        targetArn=group_arn,
        components={"com.example.Hello": {"componentVersion": version}},
        deploymentPolicies={"failureHandlingPolicy": "ROLLBACK"},
    )


def answer(client: DataPlaneClient, topic: str) -> dict:
    message = client.receive()
    assert message is not None, "no message on %s" % topic
    assert message[0] == topic, message
    return json.loads(message[1])


def effective(aws_client, thing: str, deployment_id: str) -> dict:
    deployments = aws_client("greengrassv2").list_effective_deployments(coreDeviceThingName=thing)
    return next(d for d in deployments["effectiveDeployments"] if d["deploymentId"] == deployment_id)


def test_deployment_reaches_the_device_as_an_iot_job_and_its_report_is_the_deployment_status(
    data_plane, cores, aws_client
):
    jobs = "$aws/things/core-1/jobs/"
    core = connected(data_plane, cores["core-1"])
    try:
        assert core.publish("$aws/things/core-1/greengrassv2/health/json", health("core-1", "HEALTHY")).ok
        assert core.subscribe(jobs + "notify-next").ok
        deployment = deploy(aws_client, "1.0.0")
        # The service tells the device (NextNotification), with the deployment as the job document.
        notification = answer(core, jobs + "notify-next")
        assert notification["execution"]["jobId"] == deployment["iotJobId"]
        document = notification["execution"]["jobDocument"]
        assert document["components"] == {"com.example.Hello": {"componentVersion": "1.0.0"}}
        assert document["failureHandlingPolicy"] == "ROLLBACK"
        assert document["configurationArn"].endswith(":configuration:thinggroup/%s:1" % THING_GROUP)

        # Requests are answered to the requester, which subscribed to no answer topic.
        assert core.publish(jobs + "$next/get", json.dumps({"clientToken": "n1"})).ok
        next_job = answer(core, jobs + "$next/get/accepted")
        assert (next_job["clientToken"], next_job["execution"]["status"]) == ("n1", "QUEUED")
        version = next_job["execution"]["versionNumber"]

        update = jobs + deployment["iotJobId"] + "/update"
        assert core.publish(update, json.dumps({"status": "IN_PROGRESS", "expectedVersion": version})).ok
        assert answer(core, update + "/accepted")["executionState"]["status"] == "IN_PROGRESS"
        assert effective(aws_client, "core-1", deployment["deploymentId"])["coreDeviceExecutionStatus"] == "IN_PROGRESS"

        # A stale expectedVersion is refused, and so is any change after the end.
        assert core.publish(update, json.dumps({"status": "SUCCEEDED", "expectedVersion": version})).ok
        assert answer(core, update + "/rejected")["code"] == "VersionMismatch"
        details = {"detailed-deployment-status": "SUCCESSFUL"}
        assert core.publish(update, json.dumps({"status": "SUCCEEDED", "statusDetails": details})).ok
        assert answer(core, update + "/accepted")["executionState"]["status"] == "SUCCEEDED"
        assert "execution" not in answer(core, jobs + "notify-next")  # nothing left for core-1
        assert core.publish(update, json.dumps({"status": "FAILED"})).ok
        assert answer(core, update + "/rejected")["code"] == "InvalidStateTransition"

        assert effective(aws_client, "core-1", deployment["deploymentId"])["coreDeviceExecutionStatus"] == "SUCCEEDED"
        execution = aws_client("iot").describe_job_execution(jobId=deployment["iotJobId"], thingName="core-1")
        assert execution["execution"]["status"] == "SUCCEEDED"
    finally:
        core.close()


def test_device_that_was_down_gets_the_latest_deployment_and_reports_failure(data_plane, cores, aws_client):
    first = deploy(aws_client, "1.0.0")
    second = deploy(aws_client, "1.1.0")  # replaces the first for the whole group while core-2 is offline
    jobs = "$aws/things/core-2/jobs/"
    core = connected(data_plane, cores["core-2"])
    try:
        assert core.publish("$aws/things/core-2/greengrassv2/health/json", health("core-2", "HEALTHY")).ok
        assert core.publish(jobs + "get", b"{}").ok
        pending = answer(core, jobs + "get/accepted")
        assert [job["jobId"] for job in pending["queuedJobs"]] == [second["iotJobId"]]
        assert aws_client("iot").describe_job(jobId=first["iotJobId"])["job"]["status"] == "CANCELED"

        assert core.publish(jobs + "start-next", b"{}").ok
        started = answer(core, jobs + "start-next/accepted")["execution"]
        assert (started["jobId"], started["status"]) == (second["iotJobId"], "IN_PROGRESS")
        details = {
            "deployment-failure-cause": "Service com.example.Hello in broken state after deployment",
            "deployment-error-stack": json.dumps(["DEPLOYMENT_FAILURE", "COMPONENT_BROKEN"]),
            "deployment-error-types": json.dumps(["COMPONENT_ERROR"]),
        }
        update = jobs + second["iotJobId"] + "/update"
        assert core.publish(update, json.dumps({"status": "FAILED", "statusDetails": details})).ok
        assert answer(core, update + "/accepted")["executionState"]["status"] == "FAILED"
        report = effective(aws_client, "core-2", second["deploymentId"])
        assert report["coreDeviceExecutionStatus"] == "FAILED"
        assert report["reason"] == details["deployment-failure-cause"]
        assert report["statusDetails"]["errorStack"] == ["DEPLOYMENT_FAILURE", "COMPONENT_BROKEN"]
        # A request for a job the thing has no execution of.
        assert core.publish(jobs + "no-such-job/get", b"{}").ok
        assert answer(core, jobs + "no-such-job/get/rejected")["code"] == "ResourceNotFound"
    finally:
        core.close()


# --- the Greengrass V2 data plane ----------------------------------------------------------------------------

GREENGRASS_HOST = "greengrass-ats.iot.us-east-1.amazonaws.com"


def resolve(data_plane, device, candidates, platform=None):
    body = {
        "platform": platform or {"name": "linux", "attributes": {"os": "linux", "architecture": "amd64"}},
        "componentCandidates": candidates,
    }
    return https_request(data_plane, device, GREENGRASS_HOST, "POST", "/greengrass/v2/resolveComponentCandidates", body)


def test_core_resolves_its_deployment_components_on_the_greengrass_data_plane(data_plane, cores, aws_client):
    greengrass = aws_client("greengrassv2")
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        greengrass.create_component_version(inlineRecipe=json.dumps(dict(RECIPE, ComponentVersion=version)).encode())
    core = cores["core-1"]
    status, body = resolve(data_plane, core, [{"componentName": "com.example.Hello", "componentVersion": "1.1.0"}])
    assert status == 200, body
    [resolved] = body["resolvedComponentVersions"]
    assert (resolved["componentVersion"], resolved["vendorGuidance"]) == ("1.1.0", "ACTIVE")
    recipe = json.loads(base64.b64decode(resolved["recipe"]))
    assert (recipe["ComponentName"], recipe["ComponentVersion"]) == ("com.example.Hello", "1.1.0")
    # A dependent's range picks the newest version in it; ranges no version meets conflict.
    status, body = resolve(
        data_plane, core, [{"componentName": "com.example.Hello", "versionRequirements": {"dep": ">=1.0.0 <2.0.0"}}]
    )
    assert status == 200 and body["resolvedComponentVersions"][0]["componentVersion"] == "1.1.0", body
    assert resolve(data_plane, core, [{"componentName": "com.example.Hello",
                                       "versionRequirements": {"a": ">2.0.0"}}])[0] == 409  # fmt: skip
    assert resolve(data_plane, core, [{"componentName": "com.example.Missing", "componentVersion": "1.0.0"}])[0] == 404
    windows = {"name": "windows", "attributes": {"os": "windows", "architecture": "amd64"}}
    assert resolve(data_plane, core, [{"componentName": "com.example.Hello"}], platform=windows)[0] == 404
    # AWS serves only public and Lambda components' artifacts here; the bed has none.
    arn = resolved["arn"]
    status, body = https_request(
        data_plane, core, GREENGRASS_HOST, "GET", "/greengrass/v2/components/%s/artifacts/hello.zip" % arn
    )
    assert status == 404 and "public or Lambda" in body["message"], body


def test_greengrass_data_plane_needs_the_policy_action(data_plane, cores, aws_client):
    iot = aws_client("iot")
    core = cores["core-1"]
    aws_client("greengrassv2").create_component_version(inlineRecipe=json.dumps(RECIPE).encode())
    document = json.loads(iot.get_policy(policyName=core.policy_name)["policyDocument"])
    for statement in document["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a != "greengrass:ResolveComponentCandidates"]
    document["Statement"] = [s for s in document["Statement"] if s["Action"]]
    iot.create_policy_version(policyName=core.policy_name, policyDocument=json.dumps(document), setAsDefault=True)
    status, body = resolve(data_plane, core, [{"componentName": "com.example.Hello", "componentVersion": "1.0.0"}])
    assert status == 403 and "greengrass:ResolveComponentCandidates" in body["message"], body
    # A certificate the registry does not know never reaches the operation.
    iot.update_certificate(certificateId=core.certificate_id, newStatus="INACTIVE")
    assert resolve(data_plane, core, [{"componentName": "com.example.Hello"}])[0] == 403


def test_v1_core_identity_connects_and_uses_its_shadow_and_group_ca_topics(data_plane, tmp_path):
    core = make_identities(data_plane, tmp_path, ("gg-v1",), "v1")["gg-v1"]
    # The V1 core's own MQTT connections use client IDs that start with its thing name.
    main = connected(data_plane, core)
    spooler = connected(data_plane, core, "gg-v1-spooler")
    try:
        for topic_filter in ("$aws/things/gg-v1/shadow/update/accepted", "$aws/things/gg-v1-gda/shadow/update/delta"):
            assert spooler.subscribe(topic_filter).ok, topic_filter
        for topic in ("$aws/things/gg-v1/shadow/update/accepted", "$aws/things/gg-v1-gda/shadow/update/delta"):
            assert main.publish(topic, b"{}").ok, topic
            message = spooler.receive()
            assert message is not None and message[0] == topic, (topic, message)
        assert main.publish("blog/infer/output", b"{}").ok
        # None of a V2 core's rights: no jobs topics.
        outcome = spooler.subscribe("$aws/things/gg-v1/jobs/notify-next")
        assert not outcome.ok and outcome.codes == [0x80], outcome
    finally:
        main.close()
        spooler.close()
    assert not client(data_plane, core, "other-client").connect().ok


def test_certificate_registered_without_a_ca_authenticates_on_the_broker_and_the_https_data_plane(
    data_plane, aws_client, tmp_path, token_exchange
):
    # RegisterCertificateWithoutCA: a self-signed certificate the bed's CA never signed; each TLS server of the
    # bed (the broker, the HTTPS data plane) must take it as a trust anchor on its own.
    iot = aws_client("iot")
    device = Device(tmp_path / "self-signed", "self-signed")
    device.cert_file.write_bytes(self_signed_certificate(device.key, "self-signed"))
    arn = iot.register_certificate_without_ca(certificatePem=device.cert_file.read_text(), status="ACTIVE")[
        "certificateArn"
    ]
    iot.create_thing(thingName="self-signed")
    iot.attach_thing_principal(thingName="self-signed", principal=arn)
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": ACCOUNT_ARN + "client/self-signed"},
            {
                "Effect": "Allow",
                "Action": "iot:AssumeRoleWithCertificate",
                "Resource": ACCOUNT_ARN + "rolealias/" + ALIAS,
            },
        ],
    }
    iot.create_policy(policyName="self-signed-policy", policyDocument=json.dumps(document))
    iot.attach_policy(policyName="self-signed-policy", target=arn)
    connected(data_plane, device).close()
    assert credentials_request(data_plane, aws_client, device, ALIAS, "self-signed")[0] == 200


# --------------------------------------------------------------------------- Greengrass V1 data plane


def v1_group(aws_client, core: Device, model: bytes, code: bytes) -> dict:
    """A V1 group as the detector role makes it: core, a Lambda (alias) with an S3 model resource, subscriptions."""
    import io
    import zipfile

    account = "123456789012"
    iam, s3, lam, gg = aws_client("iam"), aws_client("s3"), aws_client("lambda"), aws_client("greengrass")
    role = iam.create_role(RoleName="gg-lambda", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"}))
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="model.tar.gz", Body=model)
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("handler.py", code)
    function = lam.create_function(
        FunctionName="detector",
        Runtime="python3.8",
        Role=role["Role"]["Arn"],
        Handler="handler.function_handler",
        Code={"ZipFile": package.getvalue()},
        Publish=True,
    )
    alias = lam.create_alias(FunctionName="detector", Name="live", FunctionVersion=function["Version"])["AliasArn"]
    thing_arn = "arn:aws:iot:us-east-1:%s:thing/%s" % (account, core.thing)
    cores = gg.create_core_definition(
        InitialVersion={"Cores": [{"Id": "c", "CertificateArn": core.certificate_arn, "ThingArn": thing_arn}]}
    )
    functions = gg.create_function_definition(
        InitialVersion={
            "Functions": [
                {
                    "Id": "f",
                    "FunctionArn": alias,
                    "FunctionConfiguration": {"Pinned": True, "MemorySize": 65536, "Timeout": 30},
                }
            ]
        }
    )
    resources = gg.create_resource_definition(
        InitialVersion={
            "Resources": [
                {
                    "Id": "model",
                    "Name": "model",
                    "ResourceDataContainer": {
                        "S3MachineLearningModelResourceData": {
                            "S3Uri": "s3://models/model.tar.gz",
                            "DestinationPath": "/ml/od",
                        }
                    },
                }
            ]
        }
    )
    subscriptions = gg.create_subscription_definition(
        InitialVersion={
            "Subscriptions": [
                {"Id": "in", "Source": "cloud", "Subject": "blog/infer/input", "Target": alias},
                {"Id": "out", "Source": alias, "Subject": "blog/infer/output", "Target": "cloud"},
            ]
        }
    )
    group = gg.create_group(Name="%s-group" % core.thing)
    version = gg.create_group_version(
        GroupId=group["Id"],
        CoreDefinitionVersionArn=cores["LatestVersionArn"],
        FunctionDefinitionVersionArn=functions["LatestVersionArn"],
        ResourceDefinitionVersionArn=resources["LatestVersionArn"],
        SubscriptionDefinitionVersionArn=subscriptions["LatestVersionArn"],
    )
    return {"group_id": group["Id"], "version_id": version["Version"], "alias": alias, "thing_arn": thing_arn}


def test_v1_deployment_reaches_its_core_which_fetches_it_and_reports_the_status(data_plane, aws_client, tmp_path):
    """The path the stand-in V1 core takes: notified over MQTT, definition and artifacts over mutual TLS, its
    report is what GetDeploymentStatus answers; another core's certificate gets none of it."""
    from urllib.parse import quote

    devices = make_identities(data_plane, tmp_path, ("gg-v1-a", "gg-v1-b"), "v1")
    core, other = devices["gg-v1-a"], devices["gg-v1-b"]
    host = "greengrass-ats.iot.us-east-1.amazonaws.com"
    group = v1_group(aws_client, core, model=b"model bytes", code=b"def function_handler(event, context): pass\n")
    gda = "$aws/things/gg-v1-a-gda/shadow/"
    gg = aws_client("greengrass")
    mqtt = connected(data_plane, core)
    try:
        assert mqtt.subscribe(gda + "update/delta").ok
        # Before any deployment the shadow does not exist.
        assert mqtt.publish(gda + "get", b"{}").ok
        assert answer(mqtt, gda + "get/rejected")["code"] == 404
        deployment = gg.create_deployment(
            GroupId=group["group_id"], GroupVersionId=group["version_id"], DeploymentType="NewDeployment"
        )
        notice = answer(mqtt, gda + "update/delta")["state"]["deployment"]
        assert notice == {
            "deploymentId": deployment["DeploymentId"],
            "deploymentType": "NewDeployment",
            "groupId": group["group_id"],
            "groupVersionId": group["version_id"],
        }
        # A core that connects later asks for it.
        assert mqtt.publish(gda + "get", b"{}").ok
        assert answer(mqtt, gda + "get/accepted")["state"]["desired"]["deployment"] == notice
    finally:
        mqtt.close()

    base = "/greengrass/groups/%s/deployments/%s" % (group["group_id"], deployment["DeploymentId"])
    status, body = raw_https(data_plane, core, host, "GET", base + "/definition")
    assert status == 200, body
    document = json.loads(body)
    (function,) = document["Functions"]
    assert (function["FunctionArn"], function["Handler"], function["Runtime"]) == (
        group["alias"],
        "handler.function_handler",
        "python3.8",
    )
    assert [s["Target"] for s in document["Subscriptions"]] == [group["alias"], "cloud"]
    status, package = raw_https(
        data_plane, core, host, "GET", base + "/artifacts/lambda/" + quote(group["alias"], safe="")
    )
    assert status == 200
    import hashlib

    assert base64.b64encode(hashlib.sha256(package).digest()).decode() == function["CodeSha256"]
    assert raw_https(data_plane, core, host, "GET", base + "/artifacts/resources/model") == (200, b"model bytes")
    assert raw_https(data_plane, core, host, "GET", base + "/artifacts/resources/nope")[0] == 404

    # Another core's certificate is refused every part, and cannot report for this core.
    for path in ("/definition", "/artifacts/resources/model"):
        status, body = raw_https(data_plane, other, host, "GET", base + path)
        assert status == 403 and b"is not the core of group" in body, body
    report = base + "/cores/" + quote(group["thing_arn"], safe="")
    assert raw_https(data_plane, other, host, "POST", report, json.dumps({"Status": "Success"}).encode())[0] == 403
    assert (
        gg.get_deployment_status(GroupId=group["group_id"], DeploymentId=deployment["DeploymentId"])["DeploymentStatus"]
        == "InProgress"
    )

    # The core's own reports become the deployment's status; a wrong status is refused; the end is final.
    assert raw_https(data_plane, core, host, "POST", report, json.dumps({"Status": "Done"}).encode())[0] == 400
    failure = {"Status": "Failure", "ErrorMessage": "model did not load"}
    assert raw_https(data_plane, core, host, "POST", report, json.dumps(failure).encode())[0] == 200
    answered = gg.get_deployment_status(GroupId=group["group_id"], DeploymentId=deployment["DeploymentId"])
    assert (answered["DeploymentStatus"], answered["ErrorMessage"]) == ("Failure", "model did not load")
    assert raw_https(data_plane, core, host, "POST", report, json.dumps({"Status": "Success"}).encode())[0] == 409


def test_v1_core_without_the_deployment_actions_in_its_policy_is_refused(data_plane, aws_client, tmp_path):
    core = make_identities(data_plane, tmp_path, ("gg-v1-c",), "v1")["gg-v1-c"]
    group = v1_group(aws_client, core, model=b"m", code=b"")
    deployment = aws_client("greengrass").create_deployment(
        GroupId=group["group_id"], GroupVersionId=group["version_id"], DeploymentType="NewDeployment"
    )
    iot = aws_client("iot")
    document = json.loads(iot.get_policy(policyName=core.policy_name)["policyDocument"])
    document["Statement"] = [s for s in document["Statement"] if "greengrass:GetDeployment" not in s["Action"]]
    iot.create_policy_version(policyName=core.policy_name, policyDocument=json.dumps(document), setAsDefault=True)
    base = "/greengrass/groups/%s/deployments/%s" % (group["group_id"], deployment["DeploymentId"])
    status, body = raw_https(
        data_plane, core, "greengrass-ats.iot.us-east-1.amazonaws.com", "GET", base + "/definition"
    )
    assert status == 403 and b"greengrass:GetDeployment" in body, body
