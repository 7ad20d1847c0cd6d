"""Stand-in for the AWS IoT Greengrass V1 core daemon: TEST EQUIPMENT, never shipped as the product.

It behaves like `greengrassd` where the edgeml.greengrass roles can observe it: `start` refuses to
run (non-zero exit, reasons on stderr, which systemd puts in the journal) when config.json is
malformed, names files that do not exist, or pairs a certificate with a private key it does not
belong to, or when the kernel's hardlink/symlink protection is off; otherwise it daemonizes,
writes its pid file and stays up until `stop`. The daemon follows the group's deployments and routes its
subscriptions through the test bed's data plane (standin_deployer.py).

Layout (as in AWS's greengrass-linux-<arch>-1.11.x.tar.gz): this file sits in
<root>/ggc/core/, config in <root>/config/config.json, certificates in <root>/certs/.
Only the Python standard library is needed, plus either the `cryptography` package or the
`openssl` command to compare key and certificate (start fails closed when neither exists).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

GGC_ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = GGC_ROOT / "config" / "config.json"
CERTS_DIR = GGC_ROOT / "certs"
LOG_PATH = GGC_ROOT / "ggc" / "var" / "log" / "system" / "runtime.log"
# The real core writes /var/run/greengrassd.pid; tests on the controller point it elsewhere.
PID_FILE = Path(os.environ.get("GREENGRASSD_PIDFILE", "/var/run/greengrassd.pid"))
PROC_SYS_FS = Path(os.environ.get("GREENGRASSD_PROC_SYS_FS", "/proc/sys/fs"))

THING_ARN = re.compile(r"^arn:aws[a-z-]*:iot:[a-z0-9-]+:\d{12}:thing/[A-Za-z0-9:_-]{1,128}$")
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class ConfigError(Exception):
    """config.json or the files it names cannot run a core; args are the reasons."""


def _get(doc: object, dotted: str, kind: type | tuple[type, ...], problems: list[str]):
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            problems.append(f"{dotted}: missing")
            return None
        node = node[part]
    # bool is an int in Python; keepAlive must be a real number, not true/false.
    if not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        problems.append(f"{dotted}: expected {names}, got {type(node).__name__}")
        return None
    return node


def _file_url_path(value: str | None, dotted: str, problems: list[str]) -> Path | None:
    if value is None:
        return None
    if not value.startswith("file://"):
        problems.append(f"{dotted}: expected a file:// URL, got {value!r}")
        return None
    path = Path(value[len("file://") :])
    if not path.is_absolute() or not path.is_file():
        problems.append(f"{dotted}: {path} does not exist")
        return None
    return path


def _certs_path(value: str | None, dotted: str, problems: list[str]) -> Path | None:
    if value is None:
        return None
    path = CERTS_DIR / value
    if not path.is_file():
        problems.append(f"{dotted}: {path} does not exist")
        return None
    return path


def validate_config(doc: object) -> dict[str, Path]:
    """Check the parts of the V1 config.json a core needs to start; return the key/cert pairs to compare."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise ConfigError("config.json: top level must be an object")
    _certs_path(_get(doc, "coreThing.caPath", str, problems), "coreThing.caPath", problems)
    cert = _certs_path(_get(doc, "coreThing.certPath", str, problems), "coreThing.certPath", problems)
    key = _certs_path(_get(doc, "coreThing.keyPath", str, problems), "coreThing.keyPath", problems)
    arn = _get(doc, "coreThing.thingArn", str, problems)
    if arn is not None and not THING_ARN.match(arn):
        problems.append(f"coreThing.thingArn: {arn!r} is not an IoT thing ARN")
    for field in ("iotHost", "ggHost"):
        host = _get(doc, f"coreThing.{field}", str, problems)
        if host is not None and not HOST_NAME.match(host):
            problems.append(f"coreThing.{field}: {host!r} is not a host name")
    keep_alive = _get(doc, "coreThing.keepAlive", int, problems)
    if keep_alive is not None and not 30 <= keep_alive <= 1200:
        problems.append(f"coreThing.keepAlive: {keep_alive} is outside 30..1200 seconds")
    use_systemd = _get(doc, "runtime.cgroup.useSystemd", str, problems)
    if use_systemd is not None and use_systemd not in ("yes", "no"):
        problems.append(f"runtime.cgroup.useSystemd: expected 'yes' or 'no', got {use_systemd!r}")
    _get(doc, "managedRespawn", bool, problems)
    crypto_ca = _get(doc, "crypto.caPath", str, problems)
    _file_url_path(crypto_ca, "crypto.caPath", problems)
    iot = "crypto.principals.IoTCertificate"
    iot_key = _file_url_path(_get(doc, f"{iot}.privateKeyPath", str, problems), f"{iot}.privateKeyPath", problems)
    iot_cert = _file_url_path(_get(doc, f"{iot}.certificatePath", str, problems), f"{iot}.certificatePath", problems)
    sm = "crypto.principals.SecretsManager.privateKeyPath"
    _file_url_path(_get(doc, sm, str, problems), sm, problems)
    if problems:
        raise ConfigError(*problems)
    return {"coreThing": (cert, key), "crypto.principals.IoTCertificate": (iot_cert, iot_key)}


def _public_key_with_cryptography(cert_pem: bytes, key_pem: bytes) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    cert_pub = x509.load_pem_x509_certificate(cert_pem).public_key().public_bytes(*spki)
    key_pub = serialization.load_pem_private_key(key_pem, password=None).public_key().public_bytes(*spki)
    return cert_pub, key_pub


def _public_key_with_openssl(cert_path: Path, key_path: Path) -> tuple[bytes, bytes]:
    def run(*args: str) -> bytes:
        done = subprocess.run(["openssl", *args], capture_output=True, check=False)
        if done.returncode != 0:
            raise ConfigError(f"openssl {args[0]} could not read {args[2]}: {done.stderr.decode(errors='replace')}")
        return done.stdout

    # -passin pass: makes an encrypted key fail instead of prompting.
    return (
        run("x509", "-in", str(cert_path), "-noout", "-pubkey"),
        run("pkey", "-in", str(key_path), "-pubout", "-passin", "pass:"),
    )


def certificate_matches_key(cert_path: Path, key_path: Path) -> bool:
    """True when the certificate carries the private key's public key."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            raise ConfigError(
                "cannot compare certificate and private key: neither python3 'cryptography' nor 'openssl' is installed"
            ) from None
        cert_pub, key_pub = _public_key_with_openssl(cert_path, key_path)
        return cert_pub == key_pub
    try:
        cert_pub, key_pub = _public_key_with_cryptography(cert_path.read_bytes(), key_path.read_bytes())
    except (ValueError, TypeError) as err:
        raise ConfigError(f"cannot read {cert_path} / {key_path}: {err}") from err
    return cert_pub == key_pub


def check_kernel() -> list[str]:
    problems = []
    for name in ("protected_hardlinks", "protected_symlinks"):
        try:
            value = (PROC_SYS_FS / name).read_text().strip()
        except OSError as err:
            problems.append(f"fs.{name}: cannot read ({err})")
            continue
        if value != "1":
            problems.append(f"fs.{name} is {value}, the core needs 1 (hardlink/softlink protection)")
    return problems


def check_all() -> None:
    """Everything `start` insists on; raises ConfigError with every reason found."""
    try:
        doc = json.loads(CONFIG_PATH.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{CONFIG_PATH} does not exist") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{CONFIG_PATH} is not valid JSON: {err}") from None
    pairs = validate_config(doc)
    problems = check_kernel()
    for where, (cert, key) in pairs.items():
        if not certificate_matches_key(cert, key):
            problems.append(f"{where}: certificate {cert} does not match private key {key}")
    if problems:
        raise ConfigError(*problems)


def read_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _serve() -> None:
    """The daemon itself: record the pid, follow deployments and route messages (standin_deployer.py) until told
    to stop."""
    import logging
    import threading

    import standin_deployer

    stopping = threading.Event()

    def on_term(_signum, _frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = PID_FILE.with_name(PID_FILE.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(PID_FILE)
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [INFO] stand-in core running, pid {os.getpid()}", flush=True)
    try:
        standin_deployer.run(CONFIG_PATH, GGC_ROOT, stopping)
    except Exception as error:  # noqa: BLE001 - the daemon stays up (offline) as a core without cloud would
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [ERROR] deployments stopped: {error!r}", flush=True)
        stopping.wait()
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [INFO] stand-in core stopping", flush=True)
    try:
        if PID_FILE.read_text().strip() == str(os.getpid()):
            PID_FILE.unlink()
    except OSError:
        pass


def start() -> int:
    print("Setting up greengrass daemon (edgeml stand-in)")
    running = read_pid()
    if running:
        print(f"Greengrass daemon is already running with PID: {running}")
        return 0
    print("Validating hardlink/softlink protection, config.json and certificates")
    try:
        check_all()
    except ConfigError as err:
        for reason in err.args:
            print(f"greengrassd: {reason}", file=sys.stderr)
        print("greengrassd: refusing to start", file=sys.stderr)
        return 1
    LOG_PATH.parent.mkdir(parents=True, exist_ok=True)
    PID_FILE.unlink(missing_ok=True)
    if os.fork() == 0:
        # Classic double fork: the daemon is re-parented to init and owns no terminal.
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        os.chdir("/")
        with open(os.devnull, "rb") as devnull, open(LOG_PATH, "ab", buffering=0) as log:
            os.dup2(devnull.fileno(), 0)
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        _serve()
        os._exit(0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = read_pid()
        if pid:
            print(f"Greengrass successfully started with PID: {pid}")
            return 0
        time.sleep(0.05)
    print(f"greengrassd: daemon did not write {PID_FILE} within 10 s", file=sys.stderr)
    return 1


def stop() -> int:
    pid = read_pid()
    if not pid:
        print("Greengrass daemon is not running")
        PID_FILE.unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if read_pid() != pid:
            print("Stopped greengrass daemon")
            return 0
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    print("Killed greengrass daemon after 10 s")
    return 0


def main(argv: list[str]) -> int:
    usage = "usage: greengrassd {start|stop|restart|status|check}"
    if len(argv) != 1:
        print(usage, file=sys.stderr)
        return 2
    command = argv[0]
    if command == "start":
        return start()
    if command == "stop":
        return stop()
    if command == "restart":
        stop()
        return start()
    if command == "status":
        pid = read_pid()
        print(f"Greengrass daemon is running with PID: {pid}" if pid else "Greengrass daemon is not running")
        return 0 if pid else 3
    if command == "check":
        try:
            check_all()
        except ConfigError as err:
            for reason in err.args:
                print(f"greengrassd: {reason}", file=sys.stderr)
            return 1
        print("config.json, certificates and kernel settings are fine")
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
