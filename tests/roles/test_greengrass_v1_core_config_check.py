"""The JSON check greengrass_v1_core runs (template `validate:`) before a new config.json replaces the old one.

The check is roles/greengrass_v1_core/files/check_config_json.py; here it runs exactly as the device runs it
(`python3 -c <its code> <file>`) against a correct V1 config.json and broken variants.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.roles.config_documents import edited

ROLE = Path(__file__).resolve().parents[2] / "roles" / "greengrass_v1_core"
CHECK = (ROLE / "files" / "check_config_json.py").read_text()

GOOD = {
    "coreThing": {
        "caPath": "root.ca.pem",
        "certPath": "core.cert.pem",
        "keyPath": "core.private.key",
        "thingArn": "arn:aws:iot:us-east-1:123456789012:thing/edge-01-core",
        "iotHost": "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",
        "ggHost": "greengrass-ats.iot.us-east-1.amazonaws.com",
        "keepAlive": 600,
    },
    "runtime": {"cgroup": {"useSystemd": "yes"}},
    "managedRespawn": False,
    "crypto": {
        "caPath": "file:///greengrass/certs/root.ca.pem",
        "principals": {
            "IoTCertificate": {
                "privateKeyPath": "file:///greengrass/certs/core.private.key",
                "certificatePath": "file:///greengrass/certs/core.cert.pem",
            },
            "SecretsManager": {"privateKeyPath": "file:///greengrass/certs/core.private.key"},
        },
    },
}


def run_check(tmp_path: Path, doc) -> subprocess.CompletedProcess:
    path = tmp_path / "config.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return subprocess.run([sys.executable, "-c", CHECK, str(path)], capture_output=True, text=True, check=False)


def test_accepts_a_v1_config(tmp_path):
    done = run_check(tmp_path, GOOD)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (edited(GOOD, ("coreThing", "thingArn")), "coreThing.thingArn: missing"),
        (edited(GOOD, ("coreThing", "iotHost"), ""), "coreThing.iotHost: must be a non-empty string"),
        (edited(GOOD, ("coreThing", "keepAlive"), "600"), "coreThing.keepAlive: expected int"),
        (edited(GOOD, ("coreThing", "keepAlive"), True), "coreThing.keepAlive: expected int"),
        (edited(GOOD, ("runtime", "cgroup", "useSystemd"), "true"), "runtime.cgroup.useSystemd: expected yes or no"),
        (edited(GOOD, ("managedRespawn",), "false"), "managedRespawn: expected bool"),
        (
            edited(GOOD, ("crypto", "principals", "SecretsManager")),
            "crypto.principals.SecretsManager.privateKeyPath: missing",
        ),
        (edited(GOOD, ("crypto", "caPath"), "/greengrass/certs/root.ca.pem"), "crypto.caPath: expected a file:/// URL"),
    ],
)
def test_rejects_a_broken_config_naming_the_key(tmp_path, doc, reason):
    done = run_check(tmp_path, doc)
    assert done.returncode != 0
    assert "config.json rejected" in done.stderr
    assert reason in done.stderr


def test_rejects_text_that_is_not_json(tmp_path):
    done = run_check(tmp_path, '{"coreThing": ')
    assert done.returncode != 0
