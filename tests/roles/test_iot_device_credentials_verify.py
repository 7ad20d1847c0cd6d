"""iot_device_credentials' `verify` entry point (tasks_from: verify), the credential check the Greengrass
core roles call: run by Ansible on this machine against real keys and certificates, with both methods
(community.crypto, and the real `openssl` command used on Ubuntu 18.04/20.04).

The callers' wiring (their paths, input names and method) is tested by their own tests
(test_greengrass_v1_core_platforms.py, the greengrass_v1_core / greengrass_v2_nucleus molecule scenarios and
the V2 device test); here the entry point's own behaviour: what it accepts, what it refuses and how it says so.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.pki import private_key_pem, self_signed_certificate
from tests.roles.playbook_json import localhost_inventory, run_playbook

METHODS = [
    "community_crypto",
    pytest.param(
        "openssl", marks=pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command here")
    ),
]


def _write_pair(directory, name: str, encryption=None):
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = directory / f"{name}.private.key"
    cert_path = directory / f"{name}.cert.pem"
    key_pem = private_key_pem(key, encryption)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    cert_path.write_bytes(self_signed_certificate(key, name))
    return cert_path, key_path, key_pem


@pytest.fixture
def creds(tmp_path):
    directory = tmp_path / "creds"
    directory.mkdir()
    cert, key, key_pem = _write_pair(directory, "device")
    ca, _, _ = _write_pair(directory, "root-ca")
    _, other_key, other_pem = _write_pair(directory, "other")
    _, encrypted_key, _ = _write_pair(
        directory, "encrypted", serialization.BestAvailableEncryption(b"correct horse battery staple")
    )
    not_a_cert = directory / "not-a-cert.pem"
    not_a_cert.write_text("hello\n")
    return {
        "cert": str(cert),
        "key": str(key),
        "ca": str(ca),
        "other_key": str(other_key),
        "encrypted_key": str(encrypted_key),
        "not_a_cert": str(not_a_cert),
        "key_pems": [key_pem, other_pem],
    }


def verify(tmp_path, creds, method: str, *args: str, **overrides):
    """Run the verify entry point on localhost with these inputs (the good triple unless overridden)."""
    task_vars = {
        "iot_device_credentials_verify_certificate_path": creds["cert"],
        "iot_device_credentials_verify_private_key_path": creds["key"],
        "iot_device_credentials_verify_root_ca_path": creds["ca"],
        "iot_device_credentials_verify_method": method,
        **overrides,
    }
    play = {
        "name": "Verify device credentials",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Verify",
                "ansible.builtin.include_role": {
                    "name": "edgeml.greengrass.iot_device_credentials",
                    "tasks_from": "verify",
                },
                "vars": task_vars,
            }
        ],
    }
    playbook = tmp_path / "verify.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    return run_playbook(playbook, localhost_inventory(tmp_path), *args, timeout=120)


def failure(run) -> tuple[str, str]:
    """(task name, messages) of the task that stopped the play, item messages included."""
    for play in run.output.get("plays", []):
        for task in play.get("tasks", []):
            result = task["hosts"].get("localhost", {})
            if result.get("failed"):
                messages = [str(result.get("msg", ""))] + [
                    str(item.get("msg", "")) for item in result.get("results", []) if item.get("failed")
                ]
                return task["task"]["name"].split(" : ", 1)[-1], " ".join(messages)
    raise AssertionError(f"nothing failed: {run.describe()}")


KEY_READS = {
    "community_crypto": "Credentials | Read the public key of the private key",
    "openssl": "Credentials | Read the public key of the private key with openssl",
}


def assert_no_key_material(run, creds, method):
    """The key read's result is censored (no_log) and no private key's secret bytes are in the output."""
    key_read = run.results(KEY_READS[method])["localhost"]
    assert "censored" in key_read and "stdout" not in key_read and "public_key" not in key_read, key_read
    said = (json.dumps(run.output) + run.stderr).replace("\\n", "")
    for pem in creds["key_pems"]:
        body = b"".join(pem.splitlines()[1:-1]).decode()
        # Past the fixed PKCS#8/EC header: the private scalar itself.
        assert body[48:88] not in said, "private key material in Ansible's output"


@pytest.mark.parametrize("method", METHODS)
def test_a_matching_pair_passes_in_check_mode_too(tmp_path, creds, method):
    for args in ((), ("--check",)):
        run = verify(tmp_path, creds, method, *args)
        assert run.returncode == 0, run.describe()
        assert run.stats("localhost").get("changed", 0) == 0
        ran = run.task_names("localhost")
        assert "Credentials | Assert the private key belongs to the certificate" in ran, ran
        assert_no_key_material(run, creds, method)


@pytest.mark.parametrize("method", METHODS)
def test_another_key_is_refused_naming_the_inputs(tmp_path, creds, method):
    run = verify(tmp_path, creds, method, iot_device_credentials_verify_private_key_path=creds["other_key"])
    assert run.returncode != 0
    task, message = failure(run)
    assert task == "Credentials | Assert the private key belongs to the certificate", run.describe()
    assert (
        f"The private key {creds['other_key']} (iot_device_credentials_verify_private_key_path) does not belong to "
        f"the certificate {creds['cert']} (iot_device_credentials_verify_certificate_path): the device could not "
        "authenticate to AWS IoT." in message
    ), message
    assert_no_key_material(run, creds, method)


@pytest.mark.parametrize("method", METHODS)
def test_the_callers_input_names_and_consumer_are_quoted(tmp_path, creds, method):
    names = {
        "certificate_path": "greengrass_v2_nucleus_certificate_path",
        "private_key_path": "greengrass_v2_nucleus_private_key_path",
        "root_ca_path": "greengrass_v2_nucleus_root_ca_path",
    }
    run = verify(
        tmp_path,
        creds,
        method,
        iot_device_credentials_verify_private_key_path=creds["other_key"],
        iot_device_credentials_verify_input_names=names,
        iot_device_credentials_verify_consumer="the nucleus",
    )
    assert run.returncode != 0
    _, message = failure(run)
    assert "(greengrass_v2_nucleus_private_key_path) does not belong to the certificate" in message, message
    assert "(greengrass_v2_nucleus_certificate_path): the nucleus could not authenticate" in message, message

    run = verify(
        tmp_path,
        creds,
        method,
        iot_device_credentials_verify_root_ca_path=creds["not_a_cert"],
        iot_device_credentials_verify_input_names=names,
    )
    _, message = failure(run)
    assert f"greengrass_v2_nucleus_root_ca_path: {creds['not_a_cert']} is not a readable X.509" in message, message


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("which", ["certificate", "root_ca"])
def test_a_file_that_is_not_a_certificate_is_refused(tmp_path, creds, method, which):
    run = verify(tmp_path, creds, method, **{f"iot_device_credentials_verify_{which}_path": creds["not_a_cert"]})
    assert run.returncode != 0
    task, message = failure(run)
    assert task.startswith("Credentials | Assert"), task
    assert (
        f"iot_device_credentials_verify_{which}_path: {creds['not_a_cert']} is not a readable X.509 certificate"
        in message
    ), message


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("which", ["encrypted_key", "not_a_cert", "missing"])
def test_an_unreadable_or_encrypted_key_is_refused(tmp_path, creds, method, which):
    path = str(tmp_path / "absent.key") if which == "missing" else creds[which]
    run = verify(tmp_path, creds, method, iot_device_credentials_verify_private_key_path=path)
    assert run.returncode != 0
    task, message = failure(run)
    assert task in {
        "Credentials | Assert the private key could be read",
        "Credentials | Assert openssl could read the private key",
    }, task
    assert f"iot_device_credentials_verify_private_key_path: {path} is not a readable, unencrypted private key" in (
        message
    ), message


def test_inputs_are_validated_against_the_entry_points_spec(tmp_path, creds):
    run = verify(tmp_path, creds, "cryptography")
    assert run.returncode != 0
    assert any("iot_device_credentials_verify_method" in m and "openssl" in m for m in run.failure_messages()), (
        run.describe()
    )
    run = verify(
        tmp_path,
        creds,
        "openssl",
        iot_device_credentials_verify_input_names={"certificate_path": "x", "private_key_path": "y"},
    )
    assert run.returncode != 0
    assert any("root_ca_path" in m for m in run.failure_messages()), run.describe()
