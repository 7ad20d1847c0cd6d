"""The two programs greengrass_v2_nucleus runs on the device, from roles/greengrass_v2_nucleus/files/.

- check_config_yaml.py: the `template: validate:` check before a new config.yaml replaces the old one;
- check_nucleus_archive.py: what the install phase reads from the archive as it arrived (sha256, the jar, the
  version in conf/recipe.yaml), for the assert after it.

Each runs here exactly as the device runs it (`python3 -c <its code> <file>`), against real YAML files and real
zip archives written in the test's folder.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.roles.config_documents import edited

FILES = Path(__file__).resolve().parents[2] / "roles" / "greengrass_v2_nucleus" / "files"

# AWS's manual-provisioning config.yaml, as the role writes it.
GOOD = {
    "system": {
        "certificateFilePath": "/greengrass/v2/device.pem.crt",
        "privateKeyPath": "/greengrass/v2/private.pem.key",
        "rootCaPath": "/greengrass/v2/root.ca.pem",
        "rootpath": "/greengrass/v2",
        "thingName": "edge-03",
    },
    "services": {
        "aws.greengrass.Nucleus": {
            "componentType": "NUCLEUS",
            "version": "2.16.1",
            "configuration": {
                "awsRegion": "us-east-1",
                "iotRoleAlias": "GreengrassV2TokenExchangeRoleAlias",
                "iotDataEndpoint": "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",
                "iotCredEndpoint": "c1d2e3f4.credentials.iot.us-east-1.amazonaws.com",
            },
        }
    },
}


def run_file(name: str, path: Path) -> subprocess.CompletedProcess:
    code = (FILES / name).read_text()
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False)


def check_config(tmp_path: Path, doc) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return run_file("check_config_yaml.py", path)


def test_config_check_accepts_the_manual_provisioning_config(tmp_path):
    done = check_config(tmp_path, GOOD)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (edited(GOOD, ("system", "thingName")), "system.thingName: missing"),
        (edited(GOOD, ("system", "rootpath"), "greengrass/v2"), "system.rootpath: expected an absolute path"),
        (edited(GOOD, ("system", "privateKeyPath"), ""), "system.privateKeyPath: expected a non-empty string"),
        (
            edited(GOOD, ("services", "aws.greengrass.Nucleus", "componentType"), "GENERIC"),
            "services.aws.greengrass.Nucleus.componentType: expected NUCLEUS",
        ),
        (
            edited(GOOD, ("services", "aws.greengrass.Nucleus", "configuration", "iotCredEndpoint")),
            "services.aws.greengrass.Nucleus.configuration.iotCredEndpoint: missing",
        ),
        (
            edited(GOOD, ("services", "aws.greengrass.Nucleus", "version"), 2.16),
            "services.aws.greengrass.Nucleus.version: expected a non-empty string",
        ),
    ],
)
def test_config_check_rejects_a_broken_config_naming_the_key(tmp_path, doc, reason):
    done = check_config(tmp_path, doc)
    assert done.returncode != 0
    assert "config.yaml rejected" in done.stderr
    assert reason in done.stderr


def test_config_check_rejects_text_that_is_not_yaml(tmp_path):
    done = check_config(tmp_path, "system: [unclosed\n")
    assert done.returncode != 0
    assert "config.yaml rejected: not YAML" in done.stderr


def read_archive(tmp_path: Path, members: dict[str, str] | None, raw: bytes = b"") -> tuple[dict, str]:
    path = tmp_path / "greengrass-nucleus.zip"
    if members is None:
        path.write_bytes(raw)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in members.items():
                archive.writestr(name, text)
    done = run_file("check_nucleus_archive.py", path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), hashlib.sha256(path.read_bytes()).hexdigest()


def test_archive_check_reads_a_nucleus_archive(tmp_path):
    recipe = "ComponentName: aws.greengrass.Nucleus\nComponentVersion: '2.16.1'\n"
    found, sha256 = read_archive(tmp_path, {"lib/Greengrass.jar": "jar", "conf/recipe.yaml": recipe})
    assert found == {"sha256": sha256, "jar": True, "version": "2.16.1"}


def test_archive_check_reports_a_zip_without_the_jar_or_the_version(tmp_path):
    found, sha256 = read_archive(tmp_path, {"conf/recipe.yaml": "ComponentName: aws.greengrass.Nucleus\n"})
    assert found == {"sha256": sha256, "jar": False, "version": ""}


def test_archive_check_reports_a_file_that_is_not_a_zip(tmp_path):
    found, sha256 = read_archive(tmp_path, None, raw=b"<html>proxy error</html>")
    assert found == {"sha256": sha256, "jar": False, "version": ""}
