"""The stand-in Greengrass V2 nucleus: reproducible build with AWS's layout, an installer that lays the
nucleus out under its root, and a nucleus that refuses what the real one would refuse.

Runs the archive's own lib/Greengrass.jar with the controller's java as real processes, rooted in a
temporary folder; only --setup-system-service true (systemd) is left to the molecule scenario.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from testbed.standins.greengrass_v2_nucleus import build
from tests.pki import self_signed_certificate

pytestmark = pytest.mark.skipif(not shutil.which("javac"), reason="needs a JDK (javac) to build the stand-in")

THING = "edge-core-1"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict[str, str]:
    return build.build(tmp_path_factory.mktemp("standin-out"))


def _certificate(key) -> bytes:
    return self_signed_certificate(key, THING)


def _key_pem(key, traditional: bool) -> bytes:
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _new_key(kind: str):
    return ec.generate_private_key(ec.SECP256R1()) if kind == "EC" else rsa.generate_private_key(65537, 2048)


class Device:
    """An unpacked stand-in archive (the installer's folder), credentials and a root folder."""

    def __init__(self, base: Path, archive_path: str, version: str, key_kind: str = "EC", traditional: bool = True):
        self.base = base
        self.version = version
        self.installer = base / "GreengrassInstaller"
        with zipfile.ZipFile(archive_path) as zipped:
            zipped.extractall(self.installer)
        self.root = base / "greengrass" / "v2"
        self.certs = base / "certs"
        self.certs.mkdir()
        key = _new_key(key_kind)
        (self.certs / "private.pem.key").write_bytes(_key_pem(key, traditional))
        (self.certs / "device.pem.crt").write_bytes(_certificate(key))
        (self.certs / "AmazonRootCA1.pem").write_bytes(_certificate(_new_key("EC")))
        self.config_path = base / "config.yaml"
        self.write_config(self.config_text())

    def config_text(self, **changes: str) -> str:
        values = {
            "certificateFilePath": f'"{self.certs}/device.pem.crt"',
            "privateKeyPath": f'"{self.certs}/private.pem.key"',
            "rootCaPath": f'"{self.certs}/AmazonRootCA1.pem"',
            "rootpath": f'"{self.root}"',
            "thingName": f'"{THING}"',
            "componentType": '"NUCLEUS"',
            "version": f'"{self.version}"',
            "awsRegion": '"us-east-1"',
            "iotRoleAlias": '"GreengrassV2TokenExchangeRoleAlias"',
            "iotDataEndpoint": '"a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"',
            "iotCredEndpoint": '"c1d2e3f4g5h6i7.credentials.iot.us-east-1.amazonaws.com"',
            **changes,
        }
        system = ["certificateFilePath", "privateKeyPath", "rootCaPath", "rootpath", "thingName"]
        configuration = ["awsRegion", "iotRoleAlias", "iotDataEndpoint", "iotCredEndpoint"]
        lines = ["# written by the test", "---", "system:"]
        lines += [f"  {key}: {values[key]}" for key in system if values[key] is not None]
        lines += ["services:", "  aws.greengrass.Nucleus:"]
        lines += [f"    {key}: {values[key]}" for key in ("componentType", "version") if values[key] is not None]
        lines += ["    configuration:"]
        lines += [f"      {key}: {values[key]}" for key in configuration if values[key] is not None]
        return "\n".join(lines) + "\n"

    def write_config(self, text: str) -> None:
        self.config_path.write_text(text)

    def java(self, jar: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["java", f"-Droot={self.root}", "-Dlog.store=FILE", "-jar", str(jar), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def install(self, *extra: str) -> subprocess.CompletedProcess:
        return self.java(
            self.installer / "lib" / "Greengrass.jar",
            "--init-config",
            str(self.config_path),
            "--component-default-user",
            "root:root",
            "--setup-system-service",
            "false",
            "--start",
            "false",
            *extra,
        )

    def launch(self, settle: float = 3.0) -> tuple[int | None, str]:
        """Start the nucleus the way greengrass.service does (through the loader); (exit status or None
        if it was still up after settle seconds, its stderr)."""
        loader = self.root / "alts" / "current" / "distro" / "bin" / "loader"
        proc = subprocess.Popen(["/bin/sh", str(loader)], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        status = proc.poll()
        if status is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        return status, proc.stderr.read()


def test_build_is_reproducible_and_laid_out_like_aws_zip(archive, tmp_path):
    again = build.build(tmp_path)
    assert again["sha256"] == archive["sha256"]
    assert Path(again["path"]).read_bytes() == Path(archive["path"]).read_bytes()
    assert archive["version"] == build.version()
    with zipfile.ZipFile(archive["path"]) as zipped:
        names = set(zipped.namelist())
        assert {"lib/Greengrass.jar", "bin/loader", "conf/recipe.yaml", "LICENSE"} <= names
        assert f"ComponentVersion: '{archive['version']}'" in zipped.read("conf/recipe.yaml").decode()
        assert (zipped.getinfo("bin/loader").external_attr >> 16) & 0o777 == 0o755
        assert {info.date_time for info in zipped.infolist()} == {build.FIXED_TIME}
        jar = zipped.read("lib/Greengrass.jar")
    (tmp_path / "Greengrass.jar").write_bytes(jar)
    with zipfile.ZipFile(tmp_path / "Greengrass.jar") as zipped:
        assert "Main-Class: StandinNucleus" in zipped.read("META-INF/MANIFEST.MF").decode()


def test_json_line_names_path_checksum_and_version(tmp_path):
    done = subprocess.run(
        ["python", "-m", "testbed.standins.greengrass_v2_nucleus.build", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    printed = json.loads(done.stdout)
    assert set(printed) == {"path", "sha256", "version"}
    assert Path(printed["path"]).parent == tmp_path
    assert printed["sha256"][:12] in Path(printed["path"]).name


@pytest.mark.parametrize(
    ("key_kind", "traditional"),
    [("EC", True), ("RSA", True), ("EC", False), ("RSA", False)],
    ids=["ec-sec1", "rsa-pkcs1", "ec-pkcs8", "rsa-pkcs8"],
)
def test_installer_lays_out_the_root_and_the_nucleus_stays_up(archive, tmp_path, key_kind, traditional):
    device = Device(tmp_path, archive["path"], archive["version"], key_kind, traditional)
    done = device.install()
    assert done.returncode == 0, done.stderr
    distro = device.root / "alts" / "current" / "distro"
    assert (distro / "lib" / "Greengrass.jar").is_file()
    assert distro.resolve() == (
        device.root
        / "packages/artifacts-unarchived/aws.greengrass.Nucleus"
        / archive["version"]
        / "aws.greengrass.nucleus"
    )
    assert (device.root / "alts" / "current" / "launch.params").read_text().strip() == "-Dlog.store=FILE"
    effective = (device.root / "config" / "effectiveConfig.yaml").read_text()
    assert '"posixUser": "root:root"' in effective
    assert f'"thingName": "{THING}"' in effective

    status, stderr = device.launch()
    assert status is None, f"the nucleus exited with {status}: {stderr}"
    assert "Launched Nucleus successfully" in stderr
    assert "Launched Nucleus successfully" in (device.root / "logs" / "greengrass.log").read_text()


def test_nucleus_opens_no_tcp_port(archive, tmp_path):
    """Simulated devices share the host's network: a listening nucleus would collide across devices."""
    device = Device(tmp_path, archive["path"], archive["version"])
    assert device.install().returncode == 0
    loader = device.root / "alts" / "current" / "distro" / "bin" / "loader"
    proc = subprocess.Popen(["/bin/sh", str(loader)], stderr=subprocess.DEVNULL)
    try:
        log = device.root / "logs" / "greengrass.log"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "Launched" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.1)
        assert proc.poll() is None
        sockets = {os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")}
        inodes = {s[len("socket:[") : -1] for s in sockets if s.startswith("socket:[")}
        listening = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    listening.append(fields[1])
        assert listening == []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


REFUSED_CONFIGS = [
    # (change to config.yaml, words the refusal must contain)
    ({"thingName": None}, "system.thingName: missing"),
    ({"thingName": "123"}, "system.thingName: expected a string, got a number"),
    ({"awsRegion": '"Mars"'}, "awsRegion: not an AWS region"),
    ({"componentType": '"GENERIC"'}, "componentType: expected NUCLEUS"),
    ({"version": '"2.0.0"'}, "is not this nucleus's version"),
    ({"iotDataEndpoint": '"https://x-ats.iot.us-east-1.amazonaws.com"'}, "iotDataEndpoint: not a host name"),
    (
        {"rootCaPath": '"/nonexistent/AmazonRootCA1.pem"'},
        "system.rootCaPath: /nonexistent/AmazonRootCA1.pem does not exist",
    ),
    ({"rootpath": '"/elsewhere"'}, "is not the root this nucleus runs in"),
    ({"iotRoleAlias": None}, "iotRoleAlias: missing"),
]


@pytest.mark.parametrize(("changes", "words"), REFUSED_CONFIGS, ids=[w.split(":")[0] for _, w in REFUSED_CONFIGS])
def test_installer_refuses_a_malformed_config_and_writes_nothing(archive, tmp_path, changes, words):
    device = Device(tmp_path, archive["path"], archive["version"])
    device.write_config(device.config_text(**changes))
    done = device.install()
    assert done.returncode == 1
    assert "refusing to start" in done.stderr and words in done.stderr, done.stderr
    assert not (device.root / "alts").exists() and not (device.root / "config").exists()


def test_unsupported_yaml_and_options_are_refused_by_name(archive, tmp_path):
    device = Device(tmp_path, archive["path"], archive["version"])
    device.write_config(device.config_text() + "extra:\n  - listed\n")
    done = device.install()
    assert done.returncode == 1 and "sequences are not expected" in done.stderr, done.stderr
    device.write_config(device.config_text())
    done = device.install("--aws-region", "us-east-1")
    assert done.returncode == 1 and "unsupported option --aws-region" in done.stderr
    done = device.java(
        device.installer / "lib" / "Greengrass.jar",
        "--init-config",
        str(device.config_path),
        "--component-default-user",
        "no_such_user:root",
        "--start",
        "false",
    )
    assert done.returncode == 1 and "user no_such_user does not exist" in done.stderr


@pytest.mark.parametrize("key_kind", ["EC", "RSA"])
def test_a_key_that_does_not_match_the_certificate_is_refused(archive, tmp_path, key_kind):
    device = Device(tmp_path, archive["path"], archive["version"], key_kind)
    assert device.install().returncode == 0
    # Drift after install: the key is replaced by another of the same kind; the nucleus must not start.
    (device.certs / "private.pem.key").write_bytes(_key_pem(_new_key(key_kind), traditional=True))
    status, stderr = device.launch(settle=20)
    assert status == 1, stderr
    assert "does not match the certificate" in stderr and "system.privateKeyPath" in stderr
    assert "Launched" not in stderr


def test_a_key_of_another_type_or_encrypted_is_refused(archive, tmp_path):
    device = Device(tmp_path, archive["path"], archive["version"], "EC")
    (device.certs / "private.pem.key").write_bytes(_key_pem(_new_key("RSA"), traditional=True))
    done = device.install()
    assert done.returncode == 1 and "does not match the certificate" in done.stderr, done.stderr
    encrypted = _new_key("EC").private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (device.certs / "private.pem.key").write_bytes(encrypted)
    done = device.install()
    assert done.returncode == 1 and "is encrypted" in done.stderr, done.stderr


def test_nucleus_without_an_installed_config_refuses(archive, tmp_path):
    device = Device(tmp_path, archive["path"], archive["version"])
    done = device.java(device.installer / "lib" / "Greengrass.jar", "--setup-system-service", "false")
    assert done.returncode == 1 and "install first with --init-config" in done.stderr
