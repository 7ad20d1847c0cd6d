"""greengrass_v1_core on a real (simulated) edge device: wrong inputs stop it in preflight with a clear
message and leave the device untouched; check mode on a fresh device predicts without writing.

Devices are systemd-booted Debian 12 containers reached over SSH (testbed); the archive is the
stand-in core built by testbed/standins/greengrass_v1_core/build.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from testbed.standins.greengrass_v1_core import build
from tests.pki import private_key_pem, self_signed_certificate
from tests.roles.playbook_json import run_playbook

pytestmark = pytest.mark.devices

ROLE_PLAYBOOK = """
- name: Greengrass V1 core
  hosts: edge_devices
  gather_facts: false
  roles:
    - role: edgeml.greengrass.greengrass_v1_core
"""

CREDENTIALS_DIR = "/var/lib/edgeml-test/iot"

# Everything the role writes on a device; none of it may appear after a refused run.
FOOTPRINT_COMMAND = (
    "for p in /greengrass /etc/systemd/system/greengrass.service /etc/sysctl.d/60-greengrass-v1-core.conf "
    "/run/greengrassd.pid; do test -e $p && echo present:$p; done; "
    "ls /var/tmp | grep greengrass-core | sed 's/^/present:/'; "
    "getent passwd ggc_user >/dev/null && echo present:ggc_user; "
    "getent group ggc_group >/dev/null && echo present:ggc_group; "
    "dpkg-query -W -f='${Status}' python3-cryptography 2>/dev/null | grep -q 'install ok installed' "
    "&& echo present:python3-cryptography; "
    "systemctl list-unit-files greengrass.service --no-legend | grep -q greengrass && echo present:unit; true"
)


@pytest.fixture
def standin(tmp_path):
    return build.build(tmp_path / "standin")


@pytest.fixture
def device(edge_devices):
    fleet = edge_devices(count=1, prefix="ggpre")
    host = next(iter(fleet.hosts))
    # Credentials exist (the preflight stats them) but their content never matters here:
    # every case stops before they are read.
    made = fleet.run(
        host,
        f"sudo install -d -m 0700 {CREDENTIALS_DIR} && "
        f"echo not-a-cert | sudo tee {CREDENTIALS_DIR}/core.cert.pem >/dev/null && "
        f"echo not-a-key | sudo tee {CREDENTIALS_DIR}/core.private.key >/dev/null && "
        f"echo not-a-ca | sudo tee {CREDENTIALS_DIR}/root.ca.pem >/dev/null",
    )
    assert made.returncode == 0, made.stderr
    return fleet, host


def good_vars(standin: dict, host: str) -> dict:
    return {
        "greengrass_v1_core_thing_arn": f"arn:aws:iot:us-east-1:123456789012:thing/{host}-core",
        "greengrass_v1_core_region": "us-east-1",
        "greengrass_v1_core_iot_host": "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",
        "greengrass_v1_core_certificate_path": f"{CREDENTIALS_DIR}/core.cert.pem",
        "greengrass_v1_core_private_key_path": f"{CREDENTIALS_DIR}/core.private.key",
        "greengrass_v1_core_root_ca_path": f"{CREDENTIALS_DIR}/root.ca.pem",
        "greengrass_v1_core_archive_src": standin["path"],
        "greengrass_v1_core_archive_checksum": standin["sha256"],
    }


def footprint(fleet, host: str) -> list[str]:
    done = fleet.run(host, f"sudo sh -c {_quote(FOOTPRINT_COMMAND)}")
    assert done.returncode == 0, done.stderr
    return sorted(line for line in done.stdout.splitlines() if line.startswith("present:"))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def run_role(tmp_path, fleet, extra_vars: dict, *args: str):
    playbook = tmp_path / "greengrass_v1_core.yml"
    playbook.write_text(ROLE_PLAYBOOK)
    return run_playbook(playbook, fleet.inventory, *args, extra_vars=extra_vars, timeout=600)


def test_checksum_mismatch_fails_in_preflight_and_writes_nothing(tmp_path, device, standin):
    fleet, host = device
    before = footprint(fleet, host)
    assert before == [], f"a fresh device already has {before}"
    wrong = hashlib.sha256(b"some other archive").hexdigest()
    run = run_role(tmp_path, fleet, {**good_vars(standin, host), "greengrass_v1_core_archive_checksum": wrong})
    assert run.returncode != 0, run.describe()
    task, message = run.stopping_failure(host)
    assert task.startswith("Preflight |"), task
    assert "greengrass_v1_core_archive_checksum" in message
    assert wrong in message and standin["sha256"] in message
    assert footprint(fleet, host) == before


BAD_INPUTS = [
    # (input, bad value, words the message must contain)
    ("greengrass_v1_core_iot_host", "https://a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com", "bare host name"),
    ("greengrass_v1_core_iot_host", "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com:8883", "bare host name"),
    ("greengrass_v1_core_iot_host", "a1b2c3d4e5f6g7.iot.us-east-1.amazonaws.com", "-ats.iot.us-east-1.amazonaws.com"),
    ("greengrass_v1_core_iot_host", "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com", "-ats.iot.us-east-1"),
    ("greengrass_v1_core_iot_host", "", "bare host name"),
    ("greengrass_v1_core_gg_host", "greengrass-ats.iot.us-east-1.amazonaws.com/", "bare host name"),
    ("greengrass_v1_core_thing_arn", "edge-core-1", "arn:aws:iot:<region>"),
    ("greengrass_v1_core_region", "eu-west-1", "same as the thing ARN's"),
    ("greengrass_v1_core_archive_checksum", "md5:0123", "64 hex digits"),
    ("greengrass_v1_core_archive_url", "https://example.invalid/greengrass-linux-x86-64-1.11.6.tar.gz", "either"),
    ("greengrass_v1_core_certificate_path", "core.cert.pem", "absolute paths"),
    ("greengrass_v1_core_root_ca_path", "/nonexistent/root.ca.pem", "is not a file"),
    ("greengrass_v1_core_keep_alive", 5, "30..1200"),
    ("greengrass_v1_core_kernel_settings", "sometimes", "greengrass_v1_core_kernel_settings"),
]


def test_malformed_inputs_fail_in_preflight_naming_the_input(tmp_path, device, standin):
    fleet, host = device
    before = footprint(fleet, host)
    for name, value, words in BAD_INPUTS:
        run = run_role(tmp_path, fleet, {**good_vars(standin, host), name: value})
        assert run.returncode != 0, f"{name}={value!r} was accepted: {run.describe()}"
        task, message = run.stopping_failure(host)
        assert task.startswith("Preflight |") or task.startswith("Validating arguments"), (name, value, task)
        assert name in message, (name, value, message)
        assert words in message, (name, value, message)
    assert footprint(fleet, host) == before


def test_check_mode_on_a_fresh_device_predicts_without_writing(tmp_path, device, standin):
    fleet, host = device
    before = footprint(fleet, host)
    run = run_role(tmp_path, fleet, good_vars(standin, host), "--check")
    assert run.returncode == 0, run.describe()
    assert run.stats(host).get("changed", 0) > 0, "check mode on a fresh device must predict changes"
    assert footprint(fleet, host) == before


def push(fleet, host: str, data: bytes, dest: str, mode: str = "0644") -> None:
    done = subprocess.run(
        fleet.ssh_command(host, f"sudo install -D -m {mode} /dev/stdin {dest}"),
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_archive_url_is_checked_before_anything_is_written_then_installs(tmp_path, device, standin):
    """The URL path (get_url with sha256) on a device without python3-cryptography: a wrong checksum
    stops the role before the first write; the right one installs the role's own prerequisites and
    a running core."""
    fleet, host = device
    push(fleet, host, Path(standin["path"]).read_bytes(), "/srv/archives/greengrass-standin.tar.gz")
    url_vars = {
        **good_vars(standin, host),
        "greengrass_v1_core_archive_src": "",
        "greengrass_v1_core_archive_url": "file:///srv/archives/greengrass-standin.tar.gz",
    }
    before = footprint(fleet, host)
    wrong = hashlib.sha256(b"some other archive").hexdigest()
    run = run_role(tmp_path, fleet, {**url_vars, "greengrass_v1_core_archive_checksum": wrong})
    assert run.returncode != 0, run.describe()
    task, message = run.stopping_failure(host)
    assert task == "Install | Report the failed download", task
    assert "greengrass_v1_core_archive_url" in message and "greengrass_v1_core_archive_checksum" in message
    assert wrong in message
    assert footprint(fleet, host) == before

    # Test-only credentials: a real pair made here (the device has no crypto library yet; the role installs it).
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem = self_signed_certificate(key, f"{host}-core")
    key_pem = private_key_pem(key)
    push(fleet, host, cert_pem, f"{CREDENTIALS_DIR}/core.cert.pem")
    push(fleet, host, cert_pem, f"{CREDENTIALS_DIR}/root.ca.pem")
    push(fleet, host, key_pem, f"{CREDENTIALS_DIR}/core.private.key", mode="0600")

    run = run_role(tmp_path, fleet, url_vars)
    assert run.returncode == 0, run.describe()
    assert run.results("Install | Install the missing prerequisite packages")[host].get("changed")
    state = fleet.run(host, "systemctl is-active greengrass; sudo cat /greengrass/ggc/.installed-archive.sha256")
    assert state.stdout.split() == ["active", standin["sha256"]], state.stdout + state.stderr
    leftovers = fleet.run(host, "ls /var/tmp | grep -c greengrass-core || true")
    assert leftovers.stdout.strip() == "0", "the downloaded archive must be removed after unpacking"

    # Check mode on the converged device: predicts the config.json change, with a diff, and writes nothing.
    pid_before = fleet.run(host, "cat /run/greengrassd.pid").stdout.strip()
    run = run_role(tmp_path, fleet, {**url_vars, "greengrass_v1_core_keep_alive": 300}, "--check", "--diff")
    assert run.returncode == 0, run.describe()
    predicted = run.results("Configure | Write config.json, validated before it replaces the old one")[host]
    assert predicted.get("changed"), predicted
    diff = predicted["diff"][0] if isinstance(predicted["diff"], list) else predicted["diff"]
    assert '"keepAlive": 600' in diff["before"] and '"keepAlive": 300' in diff["after"], diff
    config_now = json.loads(fleet.run(host, "sudo cat /greengrass/config/config.json").stdout)
    assert config_now["coreThing"]["keepAlive"] == 600
    assert fleet.run(host, "cat /run/greengrassd.pid").stdout.strip() == pid_before, "check mode must not restart"
