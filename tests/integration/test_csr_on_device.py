"""The iot_device_credentials role on a real (simulated) device against the local AWS endpoint.

The private key is made on the device and must stay there: mode 0600, owned by root, never in
Ansible's output, never in a file on the controller. The certificate AWS issued from the CSR must
carry the device's key (checked with openssl on the device), a second run must change nothing,
and state=absent must leave no thing, certificate or policy in AWS.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from testbed.aws_endpoint import aws_module_options

REPO_ROOT = Path(__file__).resolve().parents[2]
DEBIAN_ROOT_CA_1 = "/usr/share/ca-certificates/mozilla/Amazon_Root_CA_1.crt"
CERT_DIR = "/greengrass/certs"
KEY = f"{CERT_DIR}/device.private.key"
CERT = f"{CERT_DIR}/device.cert.pem"
ROOT_CA = f"{CERT_DIR}/root.ca.pem"


def write_playbook(path: Path, endpoint_env: dict[str, str], fact_file: Path, state: str, mode: str = "csr") -> Path:
    aws = aws_module_options(endpoint_env)
    play = {
        "name": "Device credentials",
        "hosts": "edge_devices",
        "gather_facts": False,
        "module_defaults": {"group/edgeml.greengrass.aws": aws},
        "roles": [
            {
                "role": "edgeml.greengrass.iot_device_credentials",
                "iot_device_credentials_state": state,
                "iot_device_credentials_certificate_mode": mode,
                # Offline device: the root CA comes from Debian's ca-certificates on the device.
                "iot_device_credentials_root_ca_src": DEBIAN_ROOT_CA_1,
            }
        ],
    }
    if state == "present":
        play["post_tasks"] = [
            {
                "name": "Keep the role's fact for the test",
                "ansible.builtin.copy": {"content": "{{ iot_device_credentials | to_json }}", "dest": str(fact_file)},
                "delegate_to": "localhost",
                "vars": {"ansible_become": False, "ansible_connection": "local"},
                # Test plumbing, not the role: kept out of the recap's changed count.
                "changed_when": False,
            }
        ]
    path.write_text(yaml.safe_dump([play], sort_keys=False))
    return path


def run_playbook(playbook: Path, inventory: Path, env: dict[str, str], *extra_args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-v", "-i", str(inventory), str(playbook), *extra_args],
        env=dict(env, ANSIBLE_NOCOLOR="1"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def recap(output: str, host: str) -> dict[str, int]:
    line = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", output, re.MULTILINE)
    assert line, f"no PLAY RECAP line for {host}:\n{output[-3000:]}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.group(1))}


def on_device(fleet, host: str, command: str) -> str:
    result = fleet.run(host, command)
    assert result.returncode == 0, f"{command!r} on {host}: rc={result.returncode} {result.stderr}"
    return result.stdout


def key_body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def files_containing(root: Path, needles: list[str]) -> list[Path]:
    """Files under root holding any needle; other test runs create and delete files meanwhile."""
    skip = {".venv", ".git", ".collections", "__pycache__", ".ruff_cache", ".pytest_cache"}
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda _err: None):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            path = Path(dirpath) / name
            try:
                if path.is_symlink() or path.stat().st_size > 50_000_000:
                    continue
                text = path.read_text(errors="ignore")
            except OSError:
                continue
            if any(n in text for n in needles):
                found.append(path)
    return found


@pytest.mark.devices
@pytest.mark.aws
def test_key_stays_on_device_and_certificate_matches(edge_devices, clean_aws, ansible_env, aws_client, tmp_path):
    fleet = edge_devices(count=1)
    host = next(iter(fleet.hosts))
    env = clean_aws.environment()
    fact_file = tmp_path / "iot_device_credentials.json"
    present = write_playbook(tmp_path / "present.yml", env, fact_file, "present")
    iot = aws_client("iot")

    # Check mode on a fresh device: predicts, writes nothing on the device or in AWS.
    check = run_playbook(present, fleet.inventory, ansible_env, "--check")
    (tmp_path / "check.log").write_text(check.stdout + check.stderr)
    assert check.returncode == 0, (check.stdout + check.stderr)[-6000:]
    assert recap(check.stdout, host)["changed"] > 0
    assert fleet.run(host, f"sudo test -e {CERT_DIR}").returncode == 1, "check mode created the directory"
    assert iot.list_things()["things"] == [] and iot.list_certificates()["certificates"] == []

    first = run_playbook(present, fleet.inventory, ansible_env)
    (tmp_path / "first.log").write_text(first.stdout + first.stderr)
    assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
    assert recap(first.stdout, host)["changed"] > 0

    # The key: on the device, root-only, mode 0600.
    assert on_device(fleet, host, f"sudo stat -c '%a %U %G' {KEY}").split() == ["600", "root", "root"]
    assert on_device(fleet, host, f"sudo stat -c '%a' {CERT} {ROOT_CA}").split() == ["644", "644"]
    key_pem = on_device(fleet, host, f"sudo cat {KEY}")
    assert "PRIVATE KEY" in key_pem
    # An EC key's PEM also encodes its public key, which may be shown anywhere: look for the lines
    # that are not part of the public key's PEM (those hold the private scalar).
    key_pubkey = on_device(fleet, host, f"sudo openssl pkey -in {KEY} -pubout")
    public_base64 = "".join(key_body_lines(key_pubkey))
    body = [line for line in key_body_lines(key_pem) if line not in public_base64]
    assert body, "the key file has no private PEM body"

    # ... and nowhere else: not in Ansible's output, not in any file the run left on the controller.
    assert not [line for line in body if line in first.stdout + first.stderr], "key material in Ansible's output"
    private_value = serialization.load_pem_private_key(key_pem.encode(), None).private_numbers().private_value
    scalar_hex = f"{private_value:064x}"
    output = (first.stdout + first.stderr).lower().replace(":", "")
    assert scalar_hex not in output, "the private scalar appears in Ansible's output"
    controller_dirs = [tmp_path, Path.home() / ".ansible", REPO_ROOT]
    leaked = [p for d in controller_dirs if d.is_dir() for p in files_containing(d, body[:2])]
    assert not leaked, f"private key material found on the controller: {leaked}"

    # The certificate carries the device's key (compared on the device with openssl).
    cert_pubkey = on_device(fleet, host, f"sudo openssl x509 -in {CERT} -noout -pubkey")
    assert cert_pubkey.strip() and cert_pubkey == key_pubkey
    assert (
        on_device(fleet, host, f"sudo openssl x509 -in {ROOT_CA} -noout -fingerprint -sha256")
        .strip()
        .endswith("8E:CD:E6:88:4F:3D:87:B1:12:5B:A3:1A:C3:FC:B1:3D:70:16:DE:7F:57:CC:90:4F:E1:CB:97:C6:AE:98:19:6E")
    )

    # The fact the Greengrass core roles consume, and AWS's view of the same identity.
    fact = json.loads(fact_file.read_text())
    assert fact["thing_name"] == host
    assert fact["private_key_path"] == KEY and fact["certificate_path"] == CERT and fact["root_ca_path"] == ROOT_CA
    assert fact["region"] == "us-east-1"
    assert fact["data_endpoint"].endswith("-ats.iot.us-east-1.amazonaws.com")
    assert fact["credentials_endpoint"].endswith(".credentials.iot.us-east-1.amazonaws.com")
    principals = iot.list_thing_principals(thingName=host)["principals"]
    assert principals == [fact["certificate_arn"]]
    description = iot.describe_certificate(certificateId=fact["certificate_id"])["certificateDescription"]
    assert description["status"] == "ACTIVE"
    assert description["certificatePem"].strip() == on_device(fleet, host, f"sudo cat {CERT}").strip()
    assert [p["policyName"] for p in iot.list_attached_policies(target=fact["certificate_arn"])["policies"]] == [
        f"{host}-policy"
    ]

    # Check mode after the real run predicts no change.
    check2 = run_playbook(present, fleet.inventory, ansible_env, "--check")
    (tmp_path / "check2.log").write_text(check2.stdout + check2.stderr)
    assert check2.returncode == 0, (check2.stdout + check2.stderr)[-6000:]
    assert recap(check2.stdout, host)["changed"] == 0, check2.stdout[-6000:]

    # A second run changes nothing: no new certificate, no rewritten file.
    second = run_playbook(present, fleet.inventory, ansible_env)
    (tmp_path / "second.log").write_text(second.stdout + second.stderr)
    assert second.returncode == 0, (second.stdout + second.stderr)[-6000:]
    assert recap(second.stdout, host)["changed"] == 0, second.stdout[-6000:]
    assert iot.list_thing_principals(thingName=host)["principals"] == [fact["certificate_arn"]]
    assert on_device(fleet, host, f"sudo cat {KEY}") == key_pem

    # Re-keying: a new key on the device is refused without rotate_certificate (AWS untouched) ...
    on_device(fleet, host, f"sudo rm {KEY}")
    refused = run_playbook(present, fleet.inventory, ansible_env)
    (tmp_path / "refused.log").write_text(refused.stdout + refused.stderr)
    assert refused.returncode != 0
    assert "set rotate_certificate: true" in refused.stdout, refused.stdout[-4000:]
    assert iot.list_thing_principals(thingName=host)["principals"] == [fact["certificate_arn"]]
    # ... and with it the new key gets a certificate and the old certificate is deleted.
    rotated = run_playbook(
        present, fleet.inventory, ansible_env, "-e", "iot_device_credentials_rotate_certificate=true"
    )
    (tmp_path / "rotated.log").write_text(rotated.stdout + rotated.stderr)
    assert rotated.returncode == 0, (rotated.stdout + rotated.stderr)[-6000:]
    new_fact = json.loads(fact_file.read_text())
    assert new_fact["certificate_id"] != fact["certificate_id"]
    assert [c["certificateId"] for c in iot.list_certificates()["certificates"]] == [new_fact["certificate_id"]]
    assert on_device(fleet, host, f"sudo openssl x509 -in {CERT} -noout -pubkey") == on_device(
        fleet, host, f"sudo openssl pkey -in {KEY} -pubout"
    )

    # state=absent removes the identity from AWS and the files from the device.
    absent = write_playbook(tmp_path / "absent.yml", env, fact_file, "absent")
    third = run_playbook(absent, fleet.inventory, ansible_env)
    (tmp_path / "absent.log").write_text(third.stdout + third.stderr)
    assert third.returncode == 0, (third.stdout + third.stderr)[-6000:]
    assert iot.list_things()["things"] == []
    assert iot.list_certificates()["certificates"] == []
    assert iot.list_policies()["policies"] == []
    assert on_device(fleet, host, f"sudo ls -A {CERT_DIR}").strip() == ""


@pytest.mark.devices
@pytest.mark.aws
def test_aws_generated_key_goes_straight_to_the_device_once(edge_devices, clean_aws, ansible_env, aws_client, tmp_path):
    """aws_generated mode: the key AWS returns once is written to the device (0600) and never shown."""
    fleet = edge_devices(count=1)
    host = next(iter(fleet.hosts))
    env = clean_aws.environment()
    fact_file = tmp_path / "iot_device_credentials.json"
    present = write_playbook(tmp_path / "present.yml", env, fact_file, "present", mode="aws_generated")

    first = run_playbook(present, fleet.inventory, ansible_env)
    (tmp_path / "first.log").write_text(first.stdout + first.stderr)
    assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
    assert on_device(fleet, host, f"sudo stat -c '%a %U' {KEY}").split() == ["600", "root"]
    key_pem = on_device(fleet, host, f"sudo cat {KEY}")
    key_pubkey = on_device(fleet, host, f"sudo openssl pkey -in {KEY} -pubout")
    public_base64 = "".join(key_body_lines(key_pubkey))
    body = [line for line in key_body_lines(key_pem) if line not in public_base64]
    assert body and not [line for line in body if line in first.stdout + first.stderr]
    assert on_device(fleet, host, f"sudo openssl x509 -in {CERT} -noout -pubkey") == key_pubkey

    second = run_playbook(present, fleet.inventory, ansible_env)
    (tmp_path / "second.log").write_text(second.stdout + second.stderr)
    assert second.returncode == 0, (second.stdout + second.stderr)[-6000:]
    assert recap(second.stdout, host)["changed"] == 0, second.stdout[-6000:]
    assert on_device(fleet, host, f"sudo cat {KEY}") == key_pem
    iot = aws_client("iot")
    assert len(iot.list_certificates()["certificates"]) == 1

    third = run_playbook(
        write_playbook(tmp_path / "absent.yml", env, fact_file, "absent"), fleet.inventory, ansible_env
    )
    assert third.returncode == 0, (third.stdout + third.stderr)[-6000:]
    assert iot.list_things()["things"] == [] and iot.list_certificates()["certificates"] == []
    assert iot.list_policies()["policies"] == []
