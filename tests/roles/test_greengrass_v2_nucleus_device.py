"""greengrass_v2_nucleus on a real (simulated) edge device.

- Wrong inputs stop the role before anything is written (preflight, or the archive check that precedes
  every write), naming the input, and leave the device as it was.
- A private key that does not belong to the certificate keeps the nucleus from starting, with a clear
  message in the unit's journal; the role repairs the drift, and refuses such a key given as its input.

Devices are systemd-booted Debian 12 containers reached over SSH (testbed); the nucleus is the
stand-in built by testbed/standins/greengrass_v2_nucleus/build.py (test equipment, see its README).
The second test installs the distribution's Java runtime on its device (a few minutes).
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testbed.standins.greengrass_v2_nucleus import build
from tests.roles.playbook_json import run_playbook

pytestmark = [
    pytest.mark.devices,
    pytest.mark.skipif(not shutil.which("javac"), reason="needs a JDK (javac) to build the stand-in nucleus"),
]

ROLE_PLAYBOOK = """
- name: Greengrass V2 nucleus
  hosts: edge_devices
  gather_facts: false
  roles:
    - role: edgeml.greengrass.greengrass_v2_nucleus
"""

CREDENTIALS_DIR = "/var/lib/edgeml-test/iot"

# Everything the role writes on a device; none of it may appear after a refused run.
FOOTPRINT_COMMAND = (
    "for p in /greengrass /var/lib/edgeml/greengrass-v2-installer /var/lib/edgeml/greengrass-v2-applied.sha256 "
    "/etc/systemd/system/greengrass.service; do test -e $p && echo present:$p; done; "
    "ls /var/tmp | grep greengrass-nucleus | sed 's/^/present:/'; "
    "getent passwd ggc_user >/dev/null && echo present:ggc_user; "
    "getent group ggc_group >/dev/null && echo present:ggc_group; "
    "for pkg in default-jre-headless python3-yaml python3-cryptography unzip; do "
    "dpkg-query -W -f='${Status}' $pkg 2>/dev/null | grep -q 'install ok installed' && echo present:$pkg; done; true"
)


@pytest.fixture
def standin(tmp_path):
    return build.build(tmp_path / "standin")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def push(fleet, host: str, data: bytes, dest: str, mode: str = "0644") -> None:
    done = subprocess.run(
        fleet.ssh_command(host, f"sudo install -D -m {mode} /dev/stdin {dest}"),
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def sudo(fleet, host: str, command: str) -> subprocess.CompletedProcess:
    return fleet.run(host, f"sudo sh -c {_quote(command)}")


def footprint(fleet, host: str) -> list[str]:
    done = sudo(fleet, host, FOOTPRINT_COMMAND)
    assert done.returncode == 0, done.stderr
    return sorted(line for line in done.stdout.splitlines() if line.startswith("present:"))


def key_pem(key) -> bytes:
    # SEC1 "EC PRIVATE KEY", as community.crypto (iot_device_credentials) writes an ECDSA key.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def push_credentials(fleet, host: str) -> None:
    """Test-only credentials: a device key and its certificate signed by a throw-away CA, plus a second key
    the certificate does not belong to."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgeml test root CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    device_key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{host}-core")]))
        .issuer_name(ca_name)
        .public_key(device_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    push(fleet, host, ca.public_bytes(serialization.Encoding.PEM), f"{CREDENTIALS_DIR}/root.ca.pem")
    push(fleet, host, cert.public_bytes(serialization.Encoding.PEM), f"{CREDENTIALS_DIR}/device.cert.pem")
    push(fleet, host, key_pem(device_key), f"{CREDENTIALS_DIR}/device.private.key", mode="0600")
    push(fleet, host, key_pem(ec.generate_private_key(ec.SECP256R1())), f"{CREDENTIALS_DIR}/other.private.key", "0600")


def good_vars(standin: dict, host: str) -> dict:
    return {
        # The identity arrives as the iot_device_credentials role's fact; the role's defaults read it.
        "iot_device_credentials": {
            "thing_name": f"{host}-core",
            "region": "us-east-1",
            "certificate_path": f"{CREDENTIALS_DIR}/device.cert.pem",
            "private_key_path": f"{CREDENTIALS_DIR}/device.private.key",
            "root_ca_path": f"{CREDENTIALS_DIR}/root.ca.pem",
            "data_endpoint": "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",
            "credentials_endpoint": "c1d2e3f4g5h6i7.credentials.iot.us-east-1.amazonaws.com",
        },
        "greengrass_v2_nucleus_archive_src": standin["path"],
        "greengrass_v2_nucleus_archive_checksum": standin["sha256"],
        "greengrass_v2_nucleus_version": standin["version"],
    }


def run_role(tmp_path, fleet, extra_vars: dict, *args: str):
    playbook = tmp_path / "greengrass_v2_nucleus.yml"
    playbook.write_text(ROLE_PLAYBOOK)
    return run_playbook(playbook, fleet.inventory, *args, extra_vars=extra_vars, timeout=900)


BAD_INPUTS = [
    # (input, bad value, task the role must stop in, words the message must contain)
    (
        "greengrass_v2_nucleus_archive_checksum",
        hashlib.sha256(b"another archive").hexdigest(),
        "Preflight |",
        "has sha256",
    ),
    ("greengrass_v2_nucleus_archive_checksum", "md5:0123", "Preflight |", "64 hex digits"),
    (
        "greengrass_v2_nucleus_data_endpoint",
        "https://a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",
        "Preflight |",
        "bare host name",
    ),
    (
        "greengrass_v2_nucleus_data_endpoint",
        "a1b2c3d4e5f6g7.iot.us-east-1.amazonaws.com",
        "Preflight |",
        "-ats.iot.us-east-1.amazonaws.com",
    ),
    (
        "greengrass_v2_nucleus_data_endpoint",
        "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com",
        "Preflight |",
        "-ats.iot.us-east-1",
    ),
    (
        "greengrass_v2_nucleus_credentials_endpoint",
        "c1d2e3f4g5h6i7.credentials.iot.us-east-1.amazonaws.com:443",
        "Preflight |",
        "bare host name",
    ),
    (
        "greengrass_v2_nucleus_credentials_endpoint",
        "c1d2e3f4g5h6i7-ats.iot.us-east-1.amazonaws.com",
        "Preflight |",
        ".credentials.iot.us-east-1.amazonaws.com",
    ),
    ("greengrass_v2_nucleus_thing_name", "edge core 1", "Preflight |", "AWS IoT thing name"),
    ("greengrass_v2_nucleus_region", "us_east_1", "Preflight |", "AWS region"),
    ("greengrass_v2_nucleus_role_alias", "", "Preflight |", "role alias"),
    ("greengrass_v2_nucleus_version", "latest", "Preflight |", "semantic version"),
    (
        "greengrass_v2_nucleus_archive_url",
        "https://example.invalid/greengrass-nucleus-latest.zip",
        "Preflight |",
        "either",
    ),
    ("greengrass_v2_nucleus_certificate_path", "device.cert.pem", "Preflight |", "absolute paths"),
    ("greengrass_v2_nucleus_root_ca_path", "/nonexistent/root.ca.pem", "Preflight |", "is not a file"),
    ("greengrass_v2_nucleus_root", "/", "Preflight |", "folder of its own"),
    # Only the archive can tell its version: checked on the device before anything else is written.
    ("greengrass_v2_nucleus_version", "2.0.0", "Install | Assert the archive arrived intact", "is nucleus version"),
]


def test_bad_inputs_stop_the_role_before_anything_is_written(tmp_path, edge_devices, standin):
    fleet = edge_devices(count=1, prefix="ggv2pre")
    host = next(iter(fleet.hosts))
    push_credentials(fleet, host)
    before = footprint(fleet, host)
    assert "present:default-jre-headless" not in before
    for name, value, stage, words in BAD_INPUTS:
        run = run_role(tmp_path, fleet, {**good_vars(standin, host), name: value})
        assert run.returncode != 0, f"{name}={value!r} was accepted: {run.describe()}"
        task, message = run.stopping_failure(host)
        assert task.startswith(stage) or task.startswith("Validating arguments"), (name, value, task)
        assert name in message and words in message, (name, value, message)
        assert footprint(fleet, host) == before, (name, value)

    # The URL path: get_url checks the sha256 before the archive is kept; nothing else is written.
    push(fleet, host, Path(standin["path"]).read_bytes(), "/srv/archives/greengrass-nucleus-standin.zip")
    wrong = hashlib.sha256(b"another archive").hexdigest()
    url_vars = {
        **good_vars(standin, host),
        "greengrass_v2_nucleus_archive_src": "",
        "greengrass_v2_nucleus_archive_url": "file:///srv/archives/greengrass-nucleus-standin.zip",
        "greengrass_v2_nucleus_archive_checksum": wrong,
    }
    run = run_role(tmp_path, fleet, url_vars)
    assert run.returncode != 0, run.describe()
    task, message = run.stopping_failure(host)
    assert task == "Install | Report the failed download", task
    assert "greengrass_v2_nucleus_archive_url" in message and "greengrass_v2_nucleus_archive_checksum" in message
    assert wrong in message
    assert footprint(fleet, host) == before


def journal(fleet, host: str) -> str:
    return sudo(fleet, host, "journalctl --unit greengrass.service --lines 40 --no-pager --output cat").stdout


def test_a_key_that_does_not_match_the_certificate_keeps_the_nucleus_from_starting(tmp_path, edge_devices, standin):
    fleet = edge_devices(count=1, prefix="ggv2key")
    host = next(iter(fleet.hosts))
    push_credentials(fleet, host)
    run = run_role(tmp_path, fleet, good_vars(standin, host))
    assert run.returncode == 0, run.describe()
    state = fleet.run(host, "systemctl is-active greengrass; systemctl is-enabled greengrass")
    assert state.stdout.split() == ["active", "enabled"], state.stdout + state.stderr
    # Check mode on the converged device predicts nothing to do.
    run = run_role(tmp_path, fleet, good_vars(standin, host), "--check")
    assert run.returncode == 0, run.describe()
    assert run.stats(host).get("changed", 0) == 0, run.output.get("stats")

    # The key under the nucleus is swapped for one the certificate does not belong to.
    swapped = sudo(
        fleet,
        host,
        f"install -m 0600 {CREDENTIALS_DIR}/other.private.key /greengrass/v2/private.pem.key"
        " && systemctl restart greengrass",
    )
    assert swapped.returncode == 0, swapped.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "does not match the certificate" not in journal(fleet, host):
        time.sleep(2)
    said = journal(fleet, host)
    assert "refusing to start" in said and "does not match the certificate" in said, said
    assert "system.privateKeyPath" in said and "/greengrass/v2/private.pem.key" in said, said
    substate = fleet.run(host, "systemctl show --property=SubState --value greengrass").stdout.strip()
    assert substate != "running", substate

    # Only the run phase: the swapped key stays, and the installer refuses it; the role says why.
    run = run_role(tmp_path, fleet, good_vars(standin, host), "--tags", "greengrass_v2_nucleus_run")
    assert run.returncode != 0, run.describe()
    task, message = run.stopping_failure(host)
    assert task == "Run | Report why the installer failed", task
    assert "does not match the certificate" in message, message

    # The role puts the device's own key back: that is what the installer last applied, so it does not
    # run again; the service (stopped for the refused install) is started and runs again.
    run = run_role(tmp_path, fleet, good_vars(standin, host))
    assert run.returncode == 0, run.describe()
    assert run.results("Configure | Place the private key in the root folder, readable by root only")[host].get(
        "changed"
    )
    assert run.results("Run | Run the installer (--init-config, --setup-system-service true)")[host].get("skipped")
    assert run.results("Run | Enable and start greengrass")[host].get("changed")
    assert not run.results("Run | Wait to see that greengrass stays up")[host].get("skipped")
    assert fleet.run(host, "systemctl is-active greengrass").stdout.strip() == "active"
    pid = fleet.run(host, "systemctl show --property=MainPID --value greengrass").stdout.strip()

    # Given as the role's input, a key that does not belong to the certificate stops the role by name.
    config_before = sudo(fleet, host, "sha256sum /var/lib/edgeml/greengrass-v2-installer/config.yaml").stdout
    run = run_role(
        tmp_path,
        fleet,
        {**good_vars(standin, host), "greengrass_v2_nucleus_private_key_path": f"{CREDENTIALS_DIR}/other.private.key"},
    )
    assert run.returncode != 0, run.describe()
    task, message = run.stopping_failure(host)
    assert task == "Credentials | Assert the private key belongs to the certificate", task
    assert "greengrass_v2_nucleus_private_key_path" in message and "does not belong to" in message
    assert sudo(fleet, host, "sha256sum /var/lib/edgeml/greengrass-v2-installer/config.yaml").stdout == config_before
    assert fleet.run(host, "systemctl show --property=MainPID --value greengrass").stdout.strip() == pid


def test_check_mode_on_a_fresh_device_predicts_without_writing(tmp_path, edge_devices, standin):
    fleet = edge_devices(count=1, prefix="ggv2chk")
    host = next(iter(fleet.hosts))
    push_credentials(fleet, host)
    before = footprint(fleet, host)
    run = run_role(tmp_path, fleet, good_vars(standin, host), "--check")
    assert run.returncode == 0, run.describe()
    assert run.stats(host).get("changed", 0) > 0, "check mode on a fresh device must predict changes"
    assert footprint(fleet, host) == before
