"""Simulated edge devices: systemd-booted Debian 12 (or 13) containers reached over real SSH.

One Debian 12 root filesystem is built once (debootstrap) and cached (a Debian 13 one on request:
``--suite trixie``, for devices with Python 3.13); every
device is a cheap overlayfs copy of it booted with ``systemd-nspawn -b`` on the
host's network, with its own hostname, machine id, SSH host keys and an sshd
listening only on its own loopback address 127.0.0.N. A *bed* is a named group
of devices with one SSH key, one known_hosts file and one Ansible inventory.

    python -m testbed.edge_devices build-image [--suite trixie]
    python -m testbed.edge_devices up --count 2 --bed mybed --inventory /tmp/mybed.yml [--suite trixie]
    python -m testbed.edge_devices status
    python -m testbed.edge_devices down --bed mybed     # or --stale, or --all

Several people and test runs use beds at the same time: bed names are unique,
addresses are leased under a lock, and beds left by killed runs are reaped.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# The Debian releases a device can be, by suite: the image's folder name (Debian 12 is the default).
SUITES = {"bookworm": "debian12", "trixie": "debian13"}
# What `debootstrap --variant=minbase` leaves out but a stock Debian 12 server has
# (python3-apt comes with reportbug from the "standard" task; Ansible's apt module needs it).
EXTRA_PACKAGES = ("ca-certificates", "iproute2", "procps", "python3-apt", "wget", "less")
BASE_PACKAGES = ("openssh-server", "python3", "sudo", "systemd-sysv", "dbus")
# Bump when the post-debootstrap steps below change, so cached images are rebuilt.
IMAGE_RECIPE_VERSION = 1

DEFAULT_ROOT = Path("/var/tmp/edgeml-testbed")
# Where beds live (EDGEML_TESTBED_ROOT keeps a set of beds apart, e.g. for `down --all` in a test).
STATE_ROOT = Path(os.environ.get("EDGEML_TESTBED_ROOT") or DEFAULT_ROOT)
# Addresses are one machine-wide resource: leases are always here, whatever the beds' root.
LEASE_ROOT = DEFAULT_ROOT
NSPAWN_RUNTIME = Path("/run/systemd/nspawn")
INVENTORY_HEADER = "# Written by testbed/edge_devices.py for bed "
DEVICE_USER = "edge"
FIRST_HOST_OCTET = 10
LAST_HOST_OCTET = 254
BED_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,47}$")
DEVICE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
RESERVED_NAMES = {"leases", "failed-boots"}
# Where a device's stand-in Greengrass nucleus reads the bed's addresses (write_endpoints).
DEVICE_ENDPOINTS_FILE = "/etc/edgeml-testbed/endpoints.json"
INSTALL_HINT = "apt-get install debootstrap systemd-container (or run `source scripts/setup.sh`)"


class TestbedError(RuntimeError):
    """A clear, user-facing failure of the test bed."""

    __test__ = False  # not a pytest test class, despite the name


# --------------------------------------------------------------------------- helpers


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEML_CACHE") or Path.home() / ".cache" / "edgeml")


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise TestbedError(f"{action} needs root (debootstrap, overlay mounts and systemd-nspawn); run it as root")


def require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise TestbedError(f"missing {', '.join(missing)} on this machine: {INSTALL_HINT}")


@contextlib.contextmanager
def flocked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_checked(argv: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        raise TestbedError(f"{what} failed ({shlex.join(argv)} exited {result.returncode}):\n{output}")
    return result


def write_file(path: Path, content: str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
    """Write into a device's root from the host: never through a symlink, which would point at the host's file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(content)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- image


def check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise TestbedError(f"suite {suite!r} is not one the bed builds: expected one of {', '.join(SUITES)}")
    return suite


def image_recipe(suite: str = SUITE) -> dict:
    return {
        "suite": check_suite(suite),
        "variant": "minbase",
        "include": sorted(BASE_PACKAGES + EXTRA_PACKAGES),
        "user": DEVICE_USER,
        "version": IMAGE_RECIPE_VERSION,
    }


def image_dir(suite: str = SUITE) -> Path:
    digest = hashlib.sha256(json.dumps(image_recipe(suite), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "images" / f"{SUITES[suite]}-{digest}"


COMPLETE_MARKER = ".edgeml-image-complete"


def check_mirror(mirror: str, suite: str = SUITE) -> None:
    url = f"{mirror.rstrip('/')}/dists/{suite}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15):  # noqa: S310
            return
    except (urllib.error.URLError, OSError) as exc:
        raise TestbedError(
            f"the Debian mirror {mirror} is unreachable ({url}: {exc}); check the network or point "
            "EDGEML_DEBIAN_MIRROR at a reachable Debian mirror"
        ) from exc


def log_progress(message: str) -> None:
    print(f"edge_devices: {message}", file=sys.stderr, flush=True)


def build_image(mirror: str | None = None, log=log_progress, suite: str = SUITE) -> Path:
    """Build the cached image of a Debian suite once; later calls return at once. Progress goes to stderr."""
    target = image_dir(suite)
    if (target / COMPLETE_MARKER).exists():
        return target
    require_root("building the device image")
    require_tools("debootstrap", "systemd-nspawn", "chroot")
    mirror = mirror or os.environ.get("EDGEML_DEBIAN_MIRROR", DEFAULT_MIRROR)
    images = target.parent
    with flocked(images / ".build.lock"):
        if (target / COMPLETE_MARKER).exists():  # built by a concurrent caller while we waited
            return target
        for leftover in images.glob(".tmp-*"):  # from a killed build; we hold the lock
            shutil.rmtree(leftover, ignore_errors=True)
        if target.exists():  # incomplete: no marker
            shutil.rmtree(target)
        check_mirror(mirror, suite)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=images))
        os.chmod(tmp, 0o755)  # noqa: S103 - it becomes the devices' /, which is 0755
        log(f"building {target.name} with debootstrap from {mirror} (about a minute)")
        started = time.monotonic()
        try:
            include = ",".join(sorted(BASE_PACKAGES + EXTRA_PACKAGES))
            run_checked(
                ["debootstrap", "--variant=minbase", f"--include={include}", suite, str(tmp), mirror],
                "debootstrap",
            )
            configure_image(tmp, mirror, suite)
            (tmp / COMPLETE_MARKER).write_text(json.dumps(image_recipe(suite), sort_keys=True) + "\n")
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"built {target} in {time.monotonic() - started:.0f}s")
    return target


def configure_image(root: Path, mirror: str, suite: str = SUITE) -> None:
    """What every device shares: the `edge` sudoer, apt sources, no host keys, no machine id."""
    run_checked(
        ["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", DEVICE_USER],
        "creating the edge user in the image",
    )
    write_file(root / "etc/sudoers.d/edge", f"{DEVICE_USER} ALL=(ALL) NOPASSWD:ALL\n", mode=0o440)
    write_file(
        root / "etc/apt/sources.list",
        f"deb {mirror} {suite} main\n"
        f"deb {mirror} {suite}-updates main\n"
        f"deb http://deb.debian.org/debian-security {suite}-security main\n",
    )
    # Every device gets its own host keys and machine id at `up`; none may be shared.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    write_file(root / "etc/machine-id", "")
    with contextlib.suppress(FileNotFoundError):
        (root / "var/lib/dbus/machine-id").unlink()
    run_checked(["chroot", str(root), "apt-get", "clean"], "cleaning apt's cache in the image")


# --------------------------------------------------------------------------- processes, mounts, leases


def mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            target = line.split()[1].replace("\\040", " ")
            if target == str(path) or target.startswith(prefix):
                found.append(target)
    return found


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):  # our own child: reap it if it exited
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def proc_start_time(pid: int | None) -> str | None:
    """The process's start time in clock ticks: with the pid, an identity that survives pid reuse."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def container_leader(nspawn_pid: int) -> int | None:
    """The container's init (systemd): the child of nspawn that lives in another pid namespace."""
    own_ns = os.stat("/proc/self/ns/pid").st_ino
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            with open(entry / "stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            if ppid == nspawn_pid and os.stat(entry / "ns" / "pid").st_ino != own_ns:
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def nspawn_pid_for(pid: int | None, merged: Path) -> bool:
    """True when pid is still our systemd-nspawn for that device (not a reused pid)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return cmdline[0].endswith(b"systemd-nspawn") and f"--directory={merged}".encode() in cmdline


def processes_under(bed_dir: Path) -> list[int]:
    """The bed's systemd-nspawn processes (by command line) and its containers' processes.

    A container process's root is its device's overlay; while that overlay is mounted here, its
    st_dev identifies the processes (their /proc/PID/root paths are only "/" seen from outside).
    """
    prefix = str(bed_dir).rstrip("/") + "/"
    overlay_devs = set()
    for target in mounts_under(bed_dir):
        with contextlib.suppress(OSError):
            overlay_devs.add(os.stat(target).st_dev)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            root_dev = os.stat(entry / "root").st_dev
        except OSError:
            continue
        ours = root_dev in overlay_devs or (cmdline.split(" ", 1)[0].endswith("systemd-nspawn") and prefix in cmdline)
        if ours and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def address_in_use(address: str, port: int = 22) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((address, port)) == 0


class Leases:
    """Loopback addresses handed to devices: one file per address under LEASE_ROOT/leases, under flock.

    The same lock also makes creating a bed dir and leasing its addresses one step.
    """

    def __init__(self, root: Path = LEASE_ROOT):
        self.dir = root / "leases"
        self.lock = root / ".lock"

    @staticmethod
    def bed_dir(lease: dict) -> Path:
        return Path(lease.get("bed_dir") or DEFAULT_ROOT / lease.get("bed", "?"))

    def held(self) -> dict[str, dict]:
        leases = {}
        for path in self.dir.glob("127.*"):
            try:
                leases[path.name] = json.loads(path.read_text())
            except (OSError, ValueError):
                leases[path.name] = {}
        return leases

    def acquire(self, bed_dir: Path, devices: list[str]) -> dict[str, str]:
        """Caller holds self.lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        held = self.held()
        granted: dict[str, str] = {}
        busy = 0
        for octet in range(FIRST_HOST_OCTET, LAST_HOST_OCTET + 1):
            if len(granted) == len(devices):
                break
            address = f"127.0.0.{octet}"
            if address in held:
                continue
            if address_in_use(address):
                busy += 1
                continue
            device = devices[len(granted)]
            lease = {"bed": bed_dir.name, "bed_dir": str(bed_dir), "device": device}
            (self.dir / address).write_text(json.dumps(lease) + "\n")
            granted[device] = address
        if len(granted) < len(devices):
            self.release(bed_dir)
            raise TestbedError(
                f"no free loopback addresses for {len(devices)} devices in 127.0.0.{FIRST_HOST_OCTET}-"
                f"{LAST_HOST_OCTET} ({len(held)} leased, {busy} with something else listening on port 22, e.g. a "
                "host sshd on 0.0.0.0:22); see `python -m testbed.edge_devices status` and clean up with `down`"
            )
        return granted

    def release(self, bed_dir: Path) -> None:
        for address, lease in self.held().items():
            if self.bed_dir(lease) == bed_dir:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / address).unlink()


# --------------------------------------------------------------------------- devices and beds


@dataclass
class Device:
    name: str
    address: str
    dir: Path
    pid: int | None = None
    # The container's init and its start time: a SIGKILLed nspawn leaves its container running,
    # and this is how `down` still finds it.
    leader: int | None = None
    leader_start: str | None = None

    def leader_alive(self) -> bool:
        return pid_alive(self.leader) and proc_start_time(self.leader) == self.leader_start

    @property
    def merged(self) -> Path:
        return self.dir / "merged"

    @property
    def log(self) -> Path:
        return self.dir / "console.log"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "address": self.address,
            "dir": str(self.dir),
            "pid": self.pid,
            "leader": self.leader,
            "leader_start": self.leader_start,
        }

    @classmethod
    def from_json(cls, data: dict) -> Device:
        return cls(
            name=data["name"],
            address=data["address"],
            dir=Path(data["dir"]),
            pid=data.get("pid"),
            leader=data.get("leader"),
            leader_start=data.get("leader_start"),
        )


@dataclass
class EdgeDeviceBed:
    """A named group of simulated edge devices.

    bed = EdgeDeviceBed("mybed", count=2).up()
    bed.run("edge-01", "systemctl is-system-running")
    bed.down()
    """

    name: str
    count: int = 1
    prefix: str = "edge"
    inventory_path: Path | None = None
    boot_timeout: float = 180.0
    root: Path = STATE_ROOT
    # Explicit device (host) names instead of <prefix>-01...; molecule names them after its platforms.
    names: list[str] | None = None
    # True when the bed lives only as long as the process that booted it (a pytest run): if that
    # process dies, the bed counts as stale and the next `up` or `down --stale` removes it.
    tied_to_process: bool = False
    devices: list[Device] = field(default_factory=list)
    # The Debian release of every device of the bed (SUITES).
    suite: str = SUITE

    def __post_init__(self):
        check_suite(self.suite)
        if not BED_NAME_RE.match(self.name) or self.name in RESERVED_NAMES:
            raise TestbedError(
                f"bed name {self.name!r} is not valid: expected lowercase letters, digits, '.', '_' or '-' "
                "(at most 48, starting with a letter or digit)"
            )
        if not re.match(r"^[a-z][a-z0-9-]{0,20}$", self.prefix):
            raise TestbedError(f"device name prefix {self.prefix!r} is not valid: expected a short hostname label")
        if not 1 <= self.count <= LAST_HOST_OCTET - FIRST_HOST_OCTET + 1:
            raise TestbedError(
                f"count must be between 1 and {LAST_HOST_OCTET - FIRST_HOST_OCTET + 1}, got {self.count}"
            )
        if self.names is not None:
            self.names = list(self.names)
            bad = [name for name in self.names if not DEVICE_NAME_RE.match(name)]
            if bad or not self.names or len(set(self.names)) != len(self.names):
                raise TestbedError(
                    f"device names {self.names!r} are not valid: expected distinct hostnames of lowercase letters, "
                    "digits and '-' (at most 40 each)"
                )
            self.count = len(self.names)
        # default: inside the bed dir, removed with it
        self.inventory_path = Path(self.inventory_path or self.dir / "inventory.yml").absolute()

    # paths
    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def state_file(self) -> Path:
        return self.dir / "bed.json"

    @property
    def private_key(self) -> Path:
        return self.dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "ssh" / "known_hosts"

    @property
    def hosts(self) -> dict[str, str]:
        return {device.name: device.address for device in self.devices}

    @property
    def inventory(self) -> Path:
        return self.inventory_path

    def ssh_options(self) -> list[str]:
        return [
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    # state
    def save(self, status: str) -> None:
        state = {
            "name": self.name,
            "status": status,
            "owner_pid": os.getpid(),
            "owner_start": proc_start_time(os.getpid()),
            "tied_to_process": self.tied_to_process,
            "prefix": self.prefix,
            "image": str(image_dir(self.suite)),
            "private_key": str(self.private_key),
            "known_hosts": str(self.known_hosts),
            "inventory": str(self.inventory),
            "devices": [device.to_json() for device in self.devices],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, name: str, root: Path = STATE_ROOT) -> EdgeDeviceBed:
        bed = cls.__new__(cls)
        bed.name, bed.root, bed.count, bed.prefix, bed.boot_timeout = name, root, 0, "edge", 180.0
        bed.inventory_path, bed.devices, bed.names, bed.tied_to_process = root / name / "inventory.yml", [], None, False
        try:
            state = json.loads(bed.state_file.read_text())
        except (OSError, ValueError):
            return bed  # half-made bed: down() still cleans what exists
        bed.prefix = state.get("prefix", "edge")
        bed.inventory_path = Path(state.get("inventory") or bed.dir / "inventory.yml")
        bed.devices = [Device.from_json(device) for device in state.get("devices", [])]
        bed.count = len(bed.devices)
        return bed

    # lifecycle
    def up(self) -> EdgeDeviceBed:
        require_root("booting simulated devices")
        require_tools("systemd-nspawn", "ssh", "ssh-keygen", "mount", "umount")
        image = image_dir(self.suite)
        if not (image / COMPLETE_MARKER).exists():
            raise TestbedError(
                f"the device image {image} is not built yet: run "
                f"`python -m testbed.edge_devices build-image --suite {self.suite}`"
            )
        reap_stale_beds(self.root)
        names = self.names or [f"{self.prefix}-{index:02d}" for index in range(1, self.count + 1)]
        leases = Leases()
        with flocked(leases.lock):
            try:
                self.dir.mkdir(parents=True)
            except FileExistsError:
                raise TestbedError(
                    f"a bed named {self.name!r} already exists ({self.dir}); pick another name or remove it with "
                    f"`python -m testbed.edge_devices down --bed {self.name}`"
                ) from None
            try:
                addresses = leases.acquire(self.dir, names)
            except BaseException:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise
            self.devices = [Device(name, addresses[name], self.dir / name) for name in names]
            self.save("booting")
        try:
            self._generate_bed_key()
            with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, self.count)) as pool:
                host_keys = list(pool.map(lambda device: self._prepare(device, image), self.devices))
            self.known_hosts.write_text("".join(host_keys))
            for device in self.devices:
                self._boot(device)
            self.save("booting")
            with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, self.count)) as pool:
                list(pool.map(self._wait_until_booted, self.devices))
            self.write_inventory()
            self.save("running")
        except BaseException:
            self._keep_logs()
            self.down()
            raise
        return self

    def machine_name(self, device: Device) -> str:
        """nspawn keys runtime state in /run/systemd/nspawn on this: unique per bed and device, at most 64."""
        digest = hashlib.sha256(f"{self.name}/{device.name}".encode()).hexdigest()[:8]
        return f"{re.sub(r'[^a-z0-9-]', '-', self.name[:20])}-{digest}-{device.name[:30]}"

    def kept_log(self, device: Device) -> Path:
        """Where a device's console log is kept when `up` fails (the bed dir itself is removed)."""
        return self.root / "failed-boots" / f"{self.name}-{device.name}.log"

    def _keep_logs(self) -> None:
        for device in self.devices:
            if device.log.exists():
                self.kept_log(device).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(device.log, self.kept_log(device))

    def _generate_bed_key(self) -> None:
        self.private_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        run_checked(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"edgeml-testbed-{self.name}",
                "-f",
                str(self.private_key),
            ],
            "generating the bed's SSH key",
        )

    def _prepare(self, device: Device, image: Path) -> str:
        """Mount the device's overlay and give it its identity; returns its known_hosts lines."""
        for sub in ("upper", "work", "merged"):
            (device.dir / sub).mkdir(parents=True, exist_ok=True)
        run_checked(
            [
                "mount", "-t", "overlay", "overlay",
                "-o", f"lowerdir={image},upperdir={device.dir / 'upper'},workdir={device.dir / 'work'}",
                str(device.merged),
            ],
            f"mounting the overlay of {device.name}",
        )  # fmt: skip
        root = device.merged
        write_file(root / "etc/hostname", f"{device.name}\n")
        write_file(
            root / "etc/hosts",
            f"127.0.0.1\tlocalhost\n{device.address}\t{device.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        )
        write_file(root / "etc/machine-id", uuid.uuid4().hex + "\n", mode=0o444)
        lines = []
        for key_type in ("ed25519", "ecdsa", "rsa"):
            key = root / f"etc/ssh/ssh_host_{key_type}_key"
            bits = ["-b", "3072"] if key_type == "rsa" else []
            run_checked(
                ["ssh-keygen", "-q", "-t", key_type, *bits, "-N", "", "-C", f"root@{device.name}", "-f", str(key)],
                f"generating {device.name}'s host key",
            )
            key_type_name, key_blob = Path(f"{key}.pub").read_text().split()[:2]
            lines.append(f"{device.address} {key_type_name} {key_blob}\n")
        write_file(
            root / "etc/ssh/sshd_config.d/edgeml-testbed.conf",
            "# Simulated edge device: sshd only on this device's loopback address (the host's network is shared).\n"
            f"ListenAddress {device.address}\n"
            "PasswordAuthentication no\n",
        )
        # systemd-tmpfiles creates /run/nologin at boot and systemd-user-sessions removes it; on a loaded
        # machine that service was seen failing, leaving sshd refusing the non-root user for good. The test
        # bed does not need the boot-time login block, so the device never creates it.
        write_file(
            root / "etc/tmpfiles.d/systemd-nologin.conf",
            "# edgeml test bed: no /run/nologin during boot (see testbed/edge_devices.py)\n",
        )
        edge = root / "home" / DEVICE_USER
        uid, gid = edge.stat().st_uid, edge.stat().st_gid
        (edge / ".ssh").mkdir(mode=0o700, exist_ok=True)
        os.chown(edge / ".ssh", uid, gid)
        public_key = Path(f"{self.private_key}.pub").read_text()
        write_file(edge / ".ssh/authorized_keys", public_key, mode=0o600, uid=uid, gid=gid)
        return "".join(lines)

    def _boot(self, device: Device) -> None:
        argv = [
            "systemd-nspawn",
            "--register=no",  # the host has no system bus / machined to register with
            "--keep-unit",
            "--boot",
            "--quiet",
            "--settings=no",
            "--link-journal=no",
            "--console=read-only",
            f"--directory={device.merged}",
            f"--hostname={device.name}",
            f"--machine={self.machine_name(device)}",
        ]
        with open(device.log, "ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        device.pid = process.pid
        deadline = time.monotonic() + 10
        while device.leader is None and time.monotonic() < deadline and process.poll() is None:
            device.leader = container_leader(process.pid)
            time.sleep(0.02)
        device.leader_start = proc_start_time(device.leader)

    def _wait_until_booted(self, device: Device) -> None:
        deadline = time.monotonic() + self.boot_timeout
        last = ""
        while time.monotonic() < deadline:
            if not nspawn_pid_for(device.pid, device.merged):
                raise TestbedError(
                    f"{device.name} ({device.address}) stopped while booting; "
                    f"its log {self.kept_log(device)} ends with:\n"
                    f"{tail(device.log)}"
                )
            remaining = max(5, int(deadline - time.monotonic()))
            result = self.run(
                device.name, f"timeout {remaining} systemctl is-system-running --wait", timeout=remaining + 10
            )
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return
            last = f"ssh exit {result.returncode}: {(result.stderr or result.stdout).strip()[-300:]}"
            time.sleep(0.5)
        raise TestbedError(
            f"{device.name} ({device.address}) did not finish booting with SSH answering within "
            f"{self.boot_timeout:.0f}s (last: {last}); see its log {self.kept_log(device)}:\n{tail(device.log)}"
        )

    def write_inventory(self) -> Path:
        common_args = f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        lines = [INVENTORY_HEADER + self.name, "all:", "  children:"]
        lines += ["    edge_devices:", "      hosts:"]
        for device in self.devices:
            lines += [
                f"        {device.name}:",
                f"          ansible_host: {device.address}",
                f"          ansible_user: {DEVICE_USER}",
                "          ansible_become: true",
                f"          ansible_ssh_private_key_file: {self.private_key}",
                f'          ansible_ssh_common_args: "{common_args}"',
                "          ansible_python_interpreter: /usr/bin/python3",
            ]
        self.inventory.parent.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text("\n".join(lines) + "\n")
        return self.inventory

    def ssh_command(self, host: str, command: str) -> list[str]:
        address = self.hosts.get(host)
        if address is None:
            raise TestbedError(f"no device {host!r} in bed {self.name!r}; devices: {', '.join(self.hosts) or 'none'}")
        return [
            "ssh", *self.ssh_options(), "-o", "ConnectTimeout=5", "-i", str(self.private_key),
            f"{DEVICE_USER}@{address}", command,
        ]  # fmt: skip

    def write_endpoints(self, endpoints: dict, hosts: list[str] | None = None) -> None:
        """Tell the devices' stand-in Greengrass nucleus where this bed's AWS endpoint is (its "DNS"):
        ``endpoints`` is ``LocalAwsEndpoint.device_endpoints()``, written to ``DEVICE_ENDPOINTS_FILE``
        (testbed/standins/greengrass_v2_nucleus/README.md)."""
        encoded = base64.b64encode(json.dumps(endpoints).encode()).decode()
        for host in hosts or list(self.hosts):
            written = self.run(
                host,
                f"sudo mkdir -p {os.path.dirname(DEVICE_ENDPOINTS_FILE)} && "
                f"echo {encoded} | base64 -d | sudo tee {DEVICE_ENDPOINTS_FILE} >/dev/null",
            )
            if written.returncode != 0:
                raise TestbedError(f"{host}: writing {DEVICE_ENDPOINTS_FILE} failed: {written.stderr.strip()}")

    def run(self, host: str, command: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
        """Run a shell command on a device as `edge` over real SSH (prefix `sudo` for root)."""
        try:
            return subprocess.run(
                self.ssh_command(host, command), capture_output=True, text=True, timeout=timeout, check=check
            )
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, 124, exc.stdout or "", f"timed out after {timeout}s")

    def drop_off(self, host: str) -> None:
        """Take a device off the network as far as Ansible can tell, as when it loses power or its link mid-run:
        its sshd is stopped and every open SSH session killed (Ansible's persistent connections included), so the
        next connection is refused and Ansible reports the host unreachable. Done from the host through the
        container's namespaces, not over SSH; the device keeps running. ``come_back`` undoes it."""
        # Debian 13's OpenSSH runs each session as sshd-session, Debian 12's as sshd.
        self._in_device(host, "systemctl stop ssh.service ssh.socket; pkill -KILL -x 'sshd|sshd-session'; true")

    def come_back(self, host: str) -> None:
        """Start the sshd ``drop_off`` stopped; returns once the device answers over SSH again."""
        self._in_device(host, "systemctl start ssh.service")
        deadline = time.monotonic() + 30
        while self.run(host, "true", timeout=10).returncode != 0:
            if time.monotonic() > deadline:
                raise TestbedError(f"{host}: no SSH answer 30 s after its sshd was started again")
            time.sleep(0.5)

    def _in_device(self, host: str, command: str) -> None:
        device = next((d for d in self.devices if d.name == host), None)
        if device is None or not device.leader_alive():
            raise TestbedError(f"no running device {host!r} in bed {self.name!r}")
        done = subprocess.run(
            ["nsenter", "-t", str(device.leader), "-m", "-u", "-i", "-p", "--", "sh", "-c", command],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise TestbedError(f"{host}: `{command}` in the device exited {done.returncode}: {done.stderr.strip()}")

    def down(self, stop_timeout: float = 20.0) -> None:
        """Stop every device, unmount, remove the bed dir and release its leases. Safe to repeat."""
        with flocked(self.root / ".locks" / f"{self.name}.lock"):  # two reapers must not race on one bed
            self._down(stop_timeout)

    def _down(self, stop_timeout: float) -> None:
        stop_devices(self.dir, self.devices, stop_timeout)
        self._remove_nspawn_runtime_state()
        for device_dir in sorted(p for p in self.dir.glob("*") if (p / "merged").exists()):
            unmount(device_dir / "merged")
        left = mounts_under(self.dir)
        if left:
            raise TestbedError(f"could not unmount {', '.join(left)}; the bed dir {self.dir} is left in place")
        if self.dir.exists():
            shutil.rmtree(self.dir)
        if self.inventory_path.exists():
            with contextlib.suppress(OSError):
                if self.inventory_path.read_text().startswith(f"{INVENTORY_HEADER}{self.name}\n"):
                    self.inventory_path.unlink()
        leases = Leases()
        with flocked(leases.lock):
            leases.release(self.dir)

    def _remove_nspawn_runtime_state(self) -> None:
        """What nspawn leaves in /run when it is killed: its propagation dir and its image lock file."""
        for device in self.devices:
            with contextlib.suppress(OSError):
                (NSPAWN_RUNTIME / "propagate" / self.machine_name(device)).rmdir()
            if mounts_under(device.merged):  # the overlay's st_dev is ours only while it is mounted
                with contextlib.suppress(OSError):
                    root = os.stat(device.merged)
                    (NSPAWN_RUNTIME / "locks" / f"inode-{root.st_dev}:{root.st_ino}").unlink()

    def __enter__(self) -> EdgeDeviceBed:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()


def stop_devices(bed_dir: Path, devices: list[Device], stop_timeout: float) -> None:
    """SIGTERM each nspawn (its container shuts down in order), then SIGKILL whatever is left of the bed."""
    running = [device for device in devices if nspawn_pid_for(device.pid, device.merged)]
    for device in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(device.pid, signal.SIGTERM)
    deadline = time.monotonic() + stop_timeout
    while time.monotonic() < deadline and any(nspawn_pid_for(d.pid, d.merged) for d in running):
        time.sleep(0.2)
    for device in running:
        if nspawn_pid_for(device.pid, device.merged):
            print(
                f"edge_devices: {device.name} did not shut down within {stop_timeout:.0f}s of SIGTERM; killing it. "
                f"Its console log ends with:\n{tail(device.log, 15)}",
                file=sys.stderr,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(device.pid, signal.SIGKILL)
    # A SIGKILLed nspawn leaves its container running: killing its init ends its whole pid namespace.
    for device in devices:
        if device.leader_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(device.leader, signal.SIGKILL)
    for _ in range(50):
        leftover = processes_under(bed_dir)
        if not leftover:
            return
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    raise TestbedError(f"processes {processes_under(bed_dir)} of {bed_dir} survive SIGKILL")


def unmount(target: Path) -> None:
    for attempt in range(10):
        if not mounts_under(target):
            return
        result = subprocess.run(["umount", str(target)], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            continue
        if "not mounted" in result.stderr:
            return
        time.sleep(0.2 * (attempt + 1))
    subprocess.run(["umount", "--lazy", str(target)], capture_output=True, check=False)


# --------------------------------------------------------------------------- many beds


def bed_names(root: Path = STATE_ROOT) -> list[str]:
    if not root.exists():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and BED_NAME_RE.match(p.name) and p.name not in RESERVED_NAMES
    )


def bed_is_stale(bed: EdgeDeviceBed) -> bool:
    """Left by a killed run: its devices are all gone, or the process it was tied to (or that was
    booting it) is gone. A bed another process is still booting or using is never stale."""
    try:
        state = json.loads(bed.state_file.read_text())
    except (OSError, ValueError):
        state = {}
    owner, owner_start = state.get("owner_pid"), state.get("owner_start")
    owner_alive = pid_alive(owner) and proc_start_time(owner) == owner_start
    if state.get("status") == "booting" or state.get("tied_to_process"):
        return not owner_alive
    if state.get("status") == "running":
        # an orphaned container whose nspawn was killed counts as gone: `down` kills it
        return not any(nspawn_pid_for(device.pid, device.merged) for device in bed.devices)
    try:  # no state yet: `up` writes it under the lease lock right after creating the dir
        return time.time() - bed.dir.stat().st_mtime > 600
    except FileNotFoundError:
        return False


def reap_stale_beds(root: Path = STATE_ROOT) -> list[str]:
    reaped = []
    for name in bed_names(root):
        bed = EdgeDeviceBed.load(name, root)
        if bed_is_stale(bed):
            bed.down(stop_timeout=5)
            reaped.append(name)
    # leases whose bed dir is gone (removed by hand, or a killed `up`), in any root
    leases = Leases()
    with flocked(leases.lock):
        for address, lease in leases.held().items():
            if not leases.bed_dir(lease).exists():
                with contextlib.suppress(FileNotFoundError):
                    (leases.dir / address).unlink()
    return reaped


def bed_status(root: Path = STATE_ROOT) -> list[dict]:
    rows = []
    for name in bed_names(root):
        bed = EdgeDeviceBed.load(name, root)
        for device in bed.devices or [Device("-", "-", bed.dir)]:
            alive = nspawn_pid_for(device.pid, device.merged)
            rows.append(
                {
                    "bed": name,
                    "device": device.name,
                    "address": device.address,
                    "pid": device.pid if alive else None,
                    "state": "running" if alive else "dead",
                    "inventory": str(bed.inventory),
                }
            )
    return rows


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.edge_devices", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build-image", help="build the cached Debian 12 image (a no-op when cached)")
    build.add_argument(
        "--mirror", default=None, help=f"Debian mirror (default $EDGEML_DEBIAN_MIRROR or {DEFAULT_MIRROR})"
    )
    build.add_argument("--suite", default=SUITE, choices=sorted(SUITES), help=f"Debian suite (default {SUITE})")
    up = sub.add_parser("up", help="boot a bed of devices and write its Ansible inventory")
    up.add_argument("--count", type=int, default=1)
    up.add_argument("--bed", default=None, help="bed name (default: edge-<random>)")
    up.add_argument(
        "--inventory", type=Path, default=None, help="where to write the inventory (default: in the bed dir)"
    )
    up.add_argument("--prefix", default="edge", help="device name prefix: <prefix>-01, <prefix>-02, ...")
    up.add_argument("--names", default=None, help="comma-separated device names (instead of --count/--prefix)")
    up.add_argument("--boot-timeout", type=float, default=180.0)
    up.add_argument("--suite", default=SUITE, choices=sorted(SUITES), help=f"Debian suite (default {SUITE})")
    up.add_argument("--json", action="store_true", help="print the bed as JSON")
    up.add_argument(
        "--endpoints",
        type=Path,
        default=None,
        help="a local AWS endpoint's device map (its state dir's device_endpoints.json) to put on every device",
    )
    down = sub.add_parser("down", help="stop beds, unmount their overlays, remove them, release their addresses")
    which = down.add_mutually_exclusive_group(required=True)
    which.add_argument("--bed", help="this bed")
    which.add_argument("--stale", action="store_true", help="only beds left by killed runs (safe beside others)")
    which.add_argument("--all", action="store_true", help="every bed on this machine, other people's included")
    sub.add_parser("status", help="list beds and devices")
    args = parser.parse_args(argv)

    try:
        if args.command == "build-image":
            print(build_image(args.mirror, suite=args.suite))
        elif args.command == "up":
            name = args.bed or f"edge-{uuid.uuid4().hex[:8]}"
            bed = EdgeDeviceBed(
                name,
                count=args.count,
                prefix=args.prefix,
                inventory_path=args.inventory,
                boot_timeout=args.boot_timeout,
                names=args.names.split(",") if args.names else None,
                suite=args.suite,
            ).up()
            if args.endpoints:
                bed.write_endpoints(json.loads(args.endpoints.read_text()))
            if args.json:
                summary = {"bed": bed.name, "inventory": str(bed.inventory), "hosts": bed.hosts}
                summary.update(private_key=str(bed.private_key), known_hosts=str(bed.known_hosts))
                print(json.dumps(summary))
            else:
                for device in bed.devices:
                    print(f"{bed.name}\t{device.name}\t{device.address}")
                print(f"inventory: {bed.inventory}")
        elif args.command == "down":
            require_root("stopping simulated devices")
            if args.bed:
                if not (STATE_ROOT / args.bed).is_dir():
                    raise TestbedError(f"no bed named {args.bed!r} (see `status`)")
                EdgeDeviceBed.load(args.bed).down()
            elif args.stale:
                for name in reap_stale_beds():
                    print(f"removed stale bed {name}")
            else:
                for name in bed_names():
                    EdgeDeviceBed.load(name).down()
                    print(f"removed bed {name}")
                reap_stale_beds()
        elif args.command == "status":
            rows = bed_status()
            if not rows:
                print("no beds")
            for row in rows:
                print(f"{row['bed']}\t{row['device']}\t{row['address']}\t{row['state']}\t{row['inventory']}")
    except TestbedError as exc:
        print(f"edge_devices: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == errno.EACCES:
            print(f"edge_devices: {exc} (run as root)", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
