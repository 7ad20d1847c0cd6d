"""iot_device_identity converges after a run interrupted between creating a certificate and completing it.

The module creates a certificate INACTIVE, attaches the policy and the thing, and activates it last. A run
killed (or a create whose response was lost, then retried) in between leaves INACTIVE certificates for the
device's key; the next run must complete one of them and delete the rest, never issue another, and never
touch a certificate that belongs to another device or another thing.

Real parts: the module's own code run as Ansible runs it (a module process reading its arguments file), against
the local AWS endpoint over HTTP. The interrupted states are made here with boto3 calls to the same endpoint,
exactly the calls the module makes before the point of interruption (killing a module process at a chosen
call is what issue 14's fault proxy will do; these tests pin the state each kill point leaves).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testbed.fault_proxy import FaultPlan, FaultProxy
from tests.roles.playbook_json import playbook_aws_client_config, run_module_process

pytestmark = pytest.mark.aws

THING = "cam-1"
POLICY = f"{THING}-policy"


def make_csr(common_name: str) -> tuple[str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return csr.public_bytes(serialization.Encoding.PEM).decode(), public


def public_key(pem: str) -> bytes:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def module_process(tmp_path: Path, args: dict) -> dict:
    """Run iot_device_identity once, as Ansible's module process does (arguments file), and return its JSON."""
    return run_module_process("iot_device_identity", args, tmp_path / "args.json")


@pytest.fixture
def run_module(clean_aws, tmp_path):
    def run(check_mode: bool = False, **options):
        args = dict(clean_aws.module_options(), thing_name=THING, topic_prefixes=[f"{THING}/"], **options)
        if check_mode:
            args["_ansible_check_mode"] = True
        result = module_process(tmp_path, args)
        assert not result.get("failed"), result
        return result

    return run


@pytest.fixture
def iot(aws_client):
    return aws_client("iot")


def certificates(iot) -> dict[str, dict]:
    """Every certificate in the account: id -> status, public key, things, policies."""
    found = {}
    for listed in iot.list_certificates()["certificates"]:
        described = iot.describe_certificate(certificateId=listed["certificateId"])["certificateDescription"]
        arn = described["certificateArn"]
        found[listed["certificateId"]] = {
            "status": described["status"],
            "key": public_key(described["certificatePem"]),
            "things": iot.list_principal_things(principal=arn)["things"],
            "policies": [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]],
        }
    return found


def orphan(iot, csr: str, policy: str | None = None) -> str:
    """What a run killed right after CreateCertificateFromCsr (and, with policy, after AttachPolicy) leaves."""
    created = iot.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=False)
    if policy:
        iot.attach_policy(policyName=policy, target=created["certificateArn"])
    return created["certificateId"]


def test_new_identity_is_activated_only_once_complete(run_module, iot):
    csr, key = make_csr(THING)
    result = run_module(csr=csr)
    assert result["changed"] and result["adopted_certificate"] is None
    assert result["deleted_orphan_certificates"] == []
    assert certificates(iot) == {
        result["certificate"]["id"]: {"status": "ACTIVE", "key": key, "things": [THING], "policies": [POLICY]}
    }
    assert result["certificate"]["status"] == "ACTIVE"


def test_certificate_left_before_attachments_is_adopted_not_duplicated(run_module, iot):
    csr, key = make_csr(THING)
    left = orphan(iot, csr)

    predicted = run_module(check_mode=True, csr=csr)
    assert predicted["changed"] and predicted["adopted_certificate"] == left
    assert certificates(iot)[left]["status"] == "INACTIVE", "check mode wrote"

    result = run_module(csr=csr)
    assert result["adopted_certificate"] == left and result["certificate"]["id"] == left
    assert certificates(iot) == {left: {"status": "ACTIVE", "key": key, "things": [THING], "policies": [POLICY]}}

    again = run_module(csr=csr)
    assert not again["changed"] and again["adopted_certificate"] is None
    assert list(certificates(iot)) == [left]


def test_lost_response_duplicates_are_deleted_and_other_keys_untouched(run_module, iot):
    csr, key = make_csr(THING)
    # The module creates the thing and the policy before the certificate: a kill after AttachPolicy leaves them.
    iot.create_thing(thingName=THING)
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
    iot.create_policy(policyName=POLICY, policyDocument=json.dumps(document))
    first = orphan(iot, csr, policy=POLICY)  # executed, response lost...
    second = orphan(iot, csr, policy=POLICY)  # ...retried: a second certificate for the same key
    other_csr, other_key = make_csr("cam-2")
    other = orphan(iot, other_csr)  # another device's interrupted run: not ours to touch

    result = run_module(csr=csr)
    kept = result["certificate"]["id"]
    assert kept in (first, second) and result["adopted_certificate"] == kept
    assert result["deleted_orphan_certificates"] == [({first, second} - {kept}).pop()]
    assert certificates(iot) == {
        kept: {"status": "ACTIVE", "key": key, "things": [THING], "policies": [POLICY]},
        other: {"status": "INACTIVE", "key": other_key, "things": [], "policies": []},
    }


def test_certificate_attached_but_not_activated_is_completed(run_module, iot):
    csr, key = make_csr(THING)
    first = run_module(csr=csr)
    cert_id = first["certificate"]["id"]
    # A run killed before its last call (UpdateCertificate ACTIVE) leaves exactly this.
    iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")

    result = run_module(csr=csr)
    assert result["changed"] and result["adopted_certificate"] == cert_id
    assert certificates(iot) == {cert_id: {"status": "ACTIVE", "key": key, "things": [THING], "policies": [POLICY]}}


def test_certificate_held_by_another_thing_is_never_taken(run_module, iot):
    csr, key = make_csr(THING)
    held = orphan(iot, csr)
    iot.create_thing(thingName="someone-elses-thing")
    arn = iot.describe_certificate(certificateId=held)["certificateDescription"]["certificateArn"]
    iot.attach_thing_principal(thingName="someone-elses-thing", principal=arn)

    result = run_module(csr=csr)
    assert result["adopted_certificate"] is None and result["certificate"]["id"] != held
    found = certificates(iot)
    assert found[held] == {"status": "INACTIVE", "key": key, "things": ["someone-elses-thing"], "policies": []}
    assert found[result["certificate"]["id"]]["things"] == [THING]


def test_search_off_issues_a_new_certificate(run_module, iot):
    csr, _ = make_csr(THING)
    left = orphan(iot, csr)
    result = run_module(csr=csr, orphan_search_hours=0)
    assert result["adopted_certificate"] is None and result["certificate"]["id"] != left
    assert certificates(iot)[left]["status"] == "INACTIVE"


def test_negative_search_window_is_refused_before_any_call(clean_aws, tmp_path, iot):
    csr, _ = make_csr(THING)
    args = dict(clean_aws.module_options(), thing_name=THING, csr=csr, orphan_search_hours=-1)
    result = module_process(tmp_path, args)
    assert result["failed"] and result["msg"].startswith("orphan_search_hours: -1 is negative")
    assert iot.list_things()["things"] == [] and iot.list_certificates()["certificates"] == []


def test_three_devices_converge_through_throttling_errors_and_lost_responses(clean_aws, tmp_path, iot):
    """30% throttled, 5% failed, 10% executed with the response lost (seeded), with the playbooks' client settings:
    every device gets exactly one ACTIVE certificate for its key, and a fault-free re-run changes nothing."""
    aws_config = playbook_aws_client_config()
    devices = {f"cam-{n}": make_csr(f"cam-{n}") for n in (1, 2, 3)}
    plan = FaultPlan(throttle=0.3, error=0.05, lost=0.1, services=("iot",), seed=14)
    with FaultProxy(clean_aws.url, plan) as proxy:
        for thing, (csr, _) in devices.items():
            options = dict(
                clean_aws.module_options(), endpoint_url=proxy.url, aws_config=aws_config, thing_name=thing, csr=csr
            )
            result = module_process(tmp_path, options)
            assert not result.get("failed"), result
    assert {"throttle", "error", "lost"} <= set(plan.counts()), plan.counts()

    found = certificates(iot)
    assert sorted((c["things"], c["status"], c["policies"]) for c in found.values()) == [
        ([thing], "ACTIVE", [f"{thing}-policy"]) for thing in devices
    ]
    assert {c["key"] for c in found.values()} == {key for _, key in devices.values()}
    assert sorted(t["thingName"] for t in iot.list_things()["things"]) == sorted(devices)
    assert sorted(p["policyName"] for p in iot.list_policies()["policies"]) == [f"{t}-policy" for t in devices]

    for thing, (csr, _) in devices.items():
        again = module_process(tmp_path, dict(clean_aws.module_options(), thing_name=thing, csr=csr))
        assert not again.get("failed") and not again["changed"], again
