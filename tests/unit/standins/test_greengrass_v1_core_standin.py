"""The stand-in Greengrass V1 core archive: reproducible build, and a daemon that refuses what a core would refuse.

Runs the archive's own `greengrassd` (unpacked into a temporary root) as real processes on the controller;
only the pid file and /proc/sys/fs are pointed at temporary paths through the stand-in's environment hooks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from testbed.standins.greengrass_v1_core import build
from tests.pki import private_key_pem, self_signed_certificate

THING_ARN = "arn:aws:iot:us-east-1:123456789012:thing/edge-core-1"


def _self_signed(key) -> bytes:
    return self_signed_certificate(key, "edge-core-1")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict[str, str]:
    return build.build(tmp_path_factory.mktemp("standin-out"))


class Core:
    """One unpacked stand-in core with its own pid file and fake /proc/sys/fs."""

    def __init__(self, base: Path, archive_path: str):
        with tarfile.open(archive_path) as tar:
            tar.extractall(base, filter="data")
        self.root = base / "greengrass"
        self.pid_file = base / "run" / "greengrassd.pid"
        self.proc_fs = base / "proc_sys_fs"
        self.proc_fs.mkdir()
        self.set_kernel(hardlinks="1", symlinks="1")
        key = ec.generate_private_key(ec.SECP256R1())
        (self.root / "certs" / "core.private.key").write_bytes(private_key_pem(key))
        (self.root / "certs" / "core.cert.pem").write_bytes(_self_signed(key))
        ca_key = ec.generate_private_key(ec.SECP256R1())
        (self.root / "certs" / "root.ca.pem").write_bytes(_self_signed(ca_key))

    def set_kernel(self, hardlinks: str, symlinks: str) -> None:
        (self.proc_fs / "protected_hardlinks").write_text(hardlinks + "\n")
        (self.proc_fs / "protected_symlinks").write_text(symlinks + "\n")

    def config(self) -> dict:
        certs = self.root / "certs"
        return {
            "coreThing": {
                "caPath": "root.ca.pem",
                "certPath": "core.cert.pem",
                "keyPath": "core.private.key",
                "thingArn": THING_ARN,
                "iotHost": "abc123example-ats.iot.us-east-1.amazonaws.com",
                "ggHost": "greengrass-ats.iot.us-east-1.amazonaws.com",
                "keepAlive": 600,
            },
            "runtime": {"cgroup": {"useSystemd": "yes"}},
            "managedRespawn": False,
            "crypto": {
                "caPath": f"file://{certs}/root.ca.pem",
                "principals": {
                    "IoTCertificate": {
                        "privateKeyPath": f"file://{certs}/core.private.key",
                        "certificatePath": f"file://{certs}/core.cert.pem",
                    },
                    "SecretsManager": {"privateKeyPath": f"file://{certs}/core.private.key"},
                },
            },
        }

    def write_config(self, doc: dict | str) -> None:
        text = doc if isinstance(doc, str) else json.dumps(doc)
        (self.root / "config" / "config.json").write_text(text)

    def greengrassd(self, command: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, GREENGRASSD_PIDFILE=str(self.pid_file), GREENGRASSD_PROC_SYS_FS=str(self.proc_fs))
        # The device runs `python3` from PATH; here that is the interpreter running the tests.
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        return subprocess.run(
            [str(self.root / "ggc" / "core" / "greengrassd"), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def daemon_pid(self) -> int | None:
        if not self.pid_file.is_file():
            return None
        pid = int(self.pid_file.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid


@pytest.fixture
def core(tmp_path, archive):
    unpacked = Core(tmp_path, archive["path"])
    yield unpacked
    pid = unpacked.daemon_pid()
    if pid:  # a failed test must not leave our own daemon behind
        os.kill(pid, signal.SIGKILL)


def test_build_is_byte_for_byte_reproducible(tmp_path, archive):
    again = build.build(tmp_path / "again")
    assert again["sha256"] == archive["sha256"]
    assert Path(again["path"]).read_bytes() == Path(archive["path"]).read_bytes()
    assert hashlib.sha256(Path(again["path"]).read_bytes()).hexdigest() == again["sha256"]
    assert Path(again["path"]).name == f"greengrass-standin-{again['sha256'][:12]}.tar.gz"


def test_build_writes_to_edgeml_cache_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEML_CACHE", str(tmp_path / "cache"))
    built = build.build()
    assert Path(built["path"]).parent == tmp_path / "cache" / "standins"


def test_archive_has_the_real_core_layout_owned_by_root(archive):
    with tarfile.open(archive["path"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
    names = list(members)
    assert names == sorted(names)
    for required in (
        "greengrass/ggc/core/greengrassd",
        "greengrass/config/config.json",
        "greengrass/certs/README",
        "greengrass/ggc/core/VERSION",
    ):
        assert required in members, required
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == build.FIXED_MTIME for m in members.values())
    assert members["greengrass/ggc/core/greengrassd"].mode == 0o755
    assert members["greengrass/config/config.json"].mode == 0o644
    assert not any("__pycache__" in name for name in names)


def test_cli_prints_path_and_checksum(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "testbed.standins.greengrass_v1_core.build", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    printed = json.loads(done.stdout)
    assert hashlib.sha256(Path(printed["path"]).read_bytes()).hexdigest() == printed["sha256"]


def test_starts_with_a_valid_config_and_stops(core):
    core.write_config(core.config())
    started = core.greengrassd("start")
    assert started.returncode == 0, started.stderr
    pid = core.daemon_pid()
    assert pid, "daemon wrote no live pid file"
    assert f"PID: {pid}" in started.stdout
    assert core.greengrassd("status").returncode == 0
    again = core.greengrassd("start")
    assert again.returncode == 0 and core.daemon_pid() == pid, "a second start must not spawn a second daemon"
    stopped = core.greengrassd("stop")
    assert stopped.returncode == 0
    deadline = time.monotonic() + 5
    while core.daemon_pid() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert core.daemon_pid() is None
    assert not core.pid_file.exists()
    assert core.greengrassd("status").returncode == 3


def _refused(core, doc, *expected: str) -> str:
    core.write_config(doc)
    done = core.greengrassd("start")
    assert done.returncode == 1, done.stdout
    assert core.daemon_pid() is None
    assert "refusing to start" in done.stderr
    for text in expected:
        assert text in done.stderr
    return done.stderr


def test_refuses_missing_keys(core):
    doc = core.config()
    del doc["coreThing"]["thingArn"]
    del doc["crypto"]["principals"]["SecretsManager"]
    _refused(core, doc, "coreThing.thingArn: missing", "crypto.principals.SecretsManager.privateKeyPath: missing")


def test_refuses_wrong_types(core):
    doc = core.config()
    doc["coreThing"]["keepAlive"] = "600"
    doc["managedRespawn"] = "false"
    doc["runtime"]["cgroup"]["useSystemd"] = True
    _refused(
        core,
        doc,
        "coreThing.keepAlive: expected int, got str",
        "managedRespawn: expected bool, got str",
        "runtime.cgroup.useSystemd: expected str, got bool",
    )


def test_refuses_bad_values(core):
    doc = core.config()
    doc["coreThing"]["thingArn"] = "edge-core-1"
    doc["coreThing"]["iotHost"] = "https://abc-ats.iot.us-east-1.amazonaws.com/"
    doc["coreThing"]["keepAlive"] = 5
    _refused(core, doc, "is not an IoT thing ARN", "coreThing.iotHost", "outside 30..1200")


def test_refuses_paths_that_do_not_exist(core):
    doc = core.config()
    doc["coreThing"]["certPath"] = "missing.cert.pem"
    doc["crypto"]["caPath"] = "/greengrass/certs/root.ca.pem"
    _refused(core, doc, "missing.cert.pem does not exist", "crypto.caPath: expected a file:// URL")


def test_refuses_malformed_json(core):
    _refused(core, '{"coreThing": ', "is not valid JSON")


def test_refuses_a_certificate_of_another_key(core):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (core.root / "certs" / "core.cert.pem").write_bytes(_self_signed(other))
    _refused(core, core.config(), "does not match private key")


def test_refuses_without_hardlink_protection(core):
    core.set_kernel(hardlinks="0", symlinks="1")
    _refused(core, core.config(), "fs.protected_hardlinks is 0")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command on this controller")
def test_openssl_fallback_agrees_with_cryptography(core):
    """Devices without python3-cryptography compare keys with the openssl command instead."""
    core_module = _load_standin_module(core.root)
    certs = core.root / "certs"
    cert_pub, key_pub = core_module._public_key_with_openssl(certs / "core.cert.pem", certs / "core.private.key")
    assert cert_pub == key_pub
    ca_pub, _ = core_module._public_key_with_openssl(certs / "root.ca.pem", certs / "core.private.key")
    assert ca_pub != cert_pub


def _load_standin_module(root: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("standin_core", root / "ggc" / "core" / "standin_core.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
