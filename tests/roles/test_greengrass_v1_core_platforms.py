"""greengrass_v1_core's platform handling, run by Ansible on the controller with the platform facts of
other devices (only Debian 12 devices can be booted here; Ubuntu's and ARM's paths are exercised by
their facts, as the project's field notes prescribe).

The preflight runs for real on this machine (its /proc, its cgroups, files it creates); only the
`ansible_facts` describing the OS release and CPU are substituted. The openssl key check chosen for
Ubuntu 18.04/20.04 runs the real `openssl` command against real keys.
"""

from __future__ import annotations

import shutil
import sys

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.pki import private_key_pem, self_signed_certificate
from tests.roles.playbook_json import REPO_ROOT, localhost_inventory, run_playbook

FAKE_CHECKSUM = "0" * 64


def _pem_pair(tmp_path, name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = tmp_path / f"{name}.private.key"
    cert_path = tmp_path / f"{name}.cert.pem"
    key_path.write_bytes(private_key_pem(key))
    key_path.chmod(0o600)
    cert_path.write_bytes(self_signed_certificate(key, name))
    return cert_path, key_path


@pytest.fixture
def credentials(tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    cert, key = _pem_pair(creds, "core")
    ca, _ = _pem_pair(creds, "root-ca")
    _, other_key = _pem_pair(creds, "other")
    return {"cert": str(cert), "key": str(key), "ca": str(ca), "other_key": str(other_key)}


def credential_check_task() -> dict:
    """The role's own credential check task (install.yml's include of iot_device_credentials' verify entry
    point, with the paths, input names and key check the role passes), without its check-mode condition."""

    def tasks(items):
        for task in items:
            yield task
            yield from tasks(task.get("block", []))

    install = yaml.safe_load((REPO_ROOT / "roles/greengrass_v1_core/tasks/install.yml").read_text())
    task = next(task for task in tasks(install) if task.get("name") == "Install | Verify the device credentials")
    return {key: value for key, value in task.items() if key != "when"}


def run_preflight(tmp_path, credentials, facts: dict, extra: dict | None = None, verify_credentials: bool = False):
    play = {
        "name": "Preflight with another device's platform facts",
        "hosts": "all",
        "gather_facts": False,
        "vars": {
            "ansible_facts": {**facts, "python": {"executable": sys.executable}},
            "greengrass_v1_core_thing_arn": "arn:aws:iot:us-east-1:123456789012:thing/edge-01-core",
            "greengrass_v1_core_region": "us-east-1",
            "greengrass_v1_core_iot_host": "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",
            "greengrass_v1_core_certificate_path": credentials["cert"],
            "greengrass_v1_core_private_key_path": credentials["key"],
            "greengrass_v1_core_root_ca_path": credentials["ca"],
            "greengrass_v1_core_archive_url": (
                f"https://example.invalid/greengrass-linux-{facts['aws_arch']}-1.11.6.tar.gz"
            ),
            "greengrass_v1_core_archive_checksum": FAKE_CHECKSUM,
            **(extra or {}),
        },
        "tasks": [
            {
                "name": "Run the role's preflight",
                "ansible.builtin.include_role": {
                    "name": "edgeml.greengrass.greengrass_v1_core",
                    "tasks_from": "preflight.yml",
                },
            },
            {
                "name": "Report",
                "ansible.builtin.debug": {
                    "msg": {
                        "packages": "{{ __greengrass_v1_core_packages }}",
                        "key_check": "{{ __greengrass_v1_core_key_check }}",
                        "archive_arch": "{{ __greengrass_v1_core_archive_arch }}",
                    }
                },
            },
        ],
    }
    if verify_credentials:
        play["tasks"].insert(1, credential_check_task())
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    return run_playbook(playbook, localhost_inventory(tmp_path), timeout=300)


def facts(distribution: str, version: str, architecture: str = "x86_64", aws_arch: str = "x86-64") -> dict:
    return {
        "distribution": distribution,
        "distribution_version": version,
        "distribution_major_version": version.split(".")[0],
        "architecture": architecture,
        "aws_arch": aws_arch,  # not a fact: the archive name this CPU needs
    }


@pytest.mark.parametrize(
    ("platform", "packages", "key_check"),
    [
        (facts("Debian", "12.7"), ["python3-cryptography", "tar", "gzip"], "community_crypto"),
        (facts("Debian", "11.11", "armv7l", "armv7l"), ["python3-cryptography", "tar", "gzip"], "community_crypto"),
        (facts("Ubuntu", "24.04", "aarch64", "aarch64"), ["python3-cryptography", "tar", "gzip"], "community_crypto"),
        (facts("Ubuntu", "22.04"), ["python3-cryptography", "tar", "gzip"], "community_crypto"),
        (facts("Ubuntu", "20.04", "aarch64", "aarch64"), ["openssl", "tar", "gzip"], "openssl"),
        (facts("Ubuntu", "18.04"), ["openssl", "tar", "gzip"], "openssl"),
    ],
    ids=lambda value: value["distribution"] + "-" + value["distribution_version"] if isinstance(value, dict) else None,
)
def test_supported_platforms_load_their_variables(tmp_path, credentials, platform, packages, key_check):
    run = run_preflight(tmp_path, credentials, platform)
    assert run.returncode == 0, run.describe()
    report = run.results("Report")["localhost"]["msg"]
    assert report == {"packages": packages, "key_check": key_check, "archive_arch": platform["aws_arch"]}


@pytest.mark.parametrize(
    ("platform", "words"),
    [
        (facts("Ubuntu", "23.04"), "this host runs Ubuntu 23.04"),
        (facts("Debian", "10.13"), "this host runs Debian 10.13"),
        (facts("CentOS", "9"), "this host runs CentOS 9"),
        (facts("Debian", "12.7", "mips64", "mips64"), "this host is mips64"),
    ],
    ids=["ubuntu-23.04", "debian-10", "centos", "mips64"],
)
def test_unsupported_platforms_fail_clearly(tmp_path, credentials, platform, words):
    run = run_preflight(tmp_path, credentials, platform)
    assert run.returncode != 0
    assert any(words in message and "greengrass_v1_core supports" in message for message in run.failure_messages()), (
        run.describe()
    )


def test_an_archive_for_another_cpu_is_refused(tmp_path, credentials):
    run = run_preflight(
        tmp_path,
        credentials,
        facts("Debian", "12.7"),
        {"greengrass_v1_core_archive_url": "https://example.invalid/greengrass-linux-aarch64-1.11.6.tar.gz"},
    )
    assert run.returncode != 0
    assert any("built for another CPU" in m and "greengrass-linux-x86-64-" in m for m in run.failure_messages()), (
        run.describe()
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command on this controller")
def test_openssl_key_check_accepts_the_pair_and_refuses_another_key(tmp_path, credentials):
    """Ubuntu 18.04/20.04's path: public keys compared by the openssl command, for real."""
    ubuntu_focal = facts("Ubuntu", "20.04")
    good = run_preflight(tmp_path, credentials, ubuntu_focal, verify_credentials=True)
    assert good.returncode == 0, good.describe()
    assert good.results("Report")["localhost"]["msg"]["key_check"] == "openssl"
    bad = run_preflight(
        tmp_path,
        credentials,
        ubuntu_focal,
        {"greengrass_v1_core_private_key_path": credentials["other_key"]},
        verify_credentials=True,
    )
    assert bad.returncode != 0
    assert any(
        "does not belong to the" in m and "greengrass_v1_core_private_key_path" in m for m in bad.failure_messages()
    ), bad.describe()


def test_community_crypto_key_check_refuses_another_key(tmp_path, credentials):
    bad = run_preflight(
        tmp_path,
        credentials,
        facts("Debian", "12.7"),
        {"greengrass_v1_core_private_key_path": credentials["other_key"]},
        verify_credentials=True,
    )
    assert bad.returncode != 0
    assert any(
        "does not belong to the" in m and "greengrass_v1_core_private_key_path" in m for m in bad.failure_messages()
    ), bad.describe()


def test_the_credential_check_runs_under_the_install_tag_only(tmp_path, credentials):
    """main.yml gives the include the install phase's tag; `apply` must hand it to the included tasks."""
    task = {**credential_check_task(), "tags": ["greengrass_v1_core_install"]}
    play = {
        "name": "The role's credential check, tagged as main.yml tags it",
        "hosts": "all",
        "gather_facts": False,
        "vars": {
            "__greengrass_v1_core_key_check": "community_crypto",
            "greengrass_v1_core_certificate_path": credentials["cert"],
            "greengrass_v1_core_private_key_path": credentials["other_key"],
            "greengrass_v1_core_root_ca_path": credentials["ca"],
        },
        "tasks": [task],
    }
    playbook = tmp_path / "tagged.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    inventory = localhost_inventory(tmp_path)

    install = run_playbook(playbook, inventory, "--tags", "greengrass_v1_core_install", timeout=300)
    assert install.returncode != 0
    assert "Credentials | Assert the private key belongs to the certificate" in install.task_names("localhost")
    assert any(
        "does not belong to the" in m and "greengrass_v1_core_private_key_path" in m and "the core could not" in m
        for m in install.failure_messages()
    ), install.describe()

    configure = run_playbook(playbook, inventory, "--tags", "greengrass_v1_core_configure", timeout=300)
    assert configure.returncode == 0, configure.describe()
    assert configure.task_names("localhost", include_skipped=True) == []
