"""The simulated edge devices test bed: real systemd hosts over real SSH, and nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from testbed.edge_devices import (
    STATE_ROOT,
    EdgeDeviceBed,
    Leases,
    address_in_use,
    image_dir,
    mounts_under,
    pid_alive,
)
from testbed.edge_devices import TestbedError as BedError

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.devices


def run_testbed_cli(*args: str, root: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGEML_TESTBED_ROOT": str(root)} if root else None
    return subprocess.run(
        [sys.executable, "-m", "testbed.edge_devices", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ansible_env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}


def unique_bed(label: str) -> str:
    return f"pytest-{label}-{uuid.uuid4().hex[:8]}"


def bed_traces(bed: EdgeDeviceBed) -> dict:
    """Everything a bed leaves on the host while it exists."""
    leases = Leases().held()
    # An address this bed released may already be leased again by a bed of a parallel test worker, whose sshd
    # then listens there: that one is not this bed's trace.
    leased_elsewhere = {a for a, lease in leases.items() if Leases.bed_dir(lease) != bed.dir}
    return {
        "dir": bed.dir.exists(),
        "mounts": mounts_under(bed.dir),
        "nspawn": [d.pid for d in bed.devices if pid_alive(d.pid)],
        "containers": [d.leader for d in bed.devices if d.leader_alive()],
        "leases": sorted(a for a, lease in leases.items() if Leases.bed_dir(lease) == bed.dir),
        "sshd": [d.address for d in bed.devices if d.address not in leased_elsewhere and address_in_use(d.address)],
    }


NOTHING_LEFT = {"dir": False, "mounts": [], "nspawn": [], "containers": [], "leases": [], "sshd": []}


def test_devices_are_systemd_hosts_with_their_own_identity(edge_devices):
    fleet = edge_devices(count=2)
    assert sorted(fleet.hosts) == ["edge-01", "edge-02"]
    addresses = list(fleet.hosts.values())
    assert len(set(addresses)) == 2
    assert all(address.startswith("127.0.0.") and int(address.rsplit(".", 1)[1]) >= 10 for address in addresses)

    facts = {}
    for host in fleet.hosts:
        result = fleet.run(host, "hostname; systemctl is-system-running; cat /etc/machine-id; id -un; sudo -n id -u")
        assert result.returncode in (0, 1), result.stderr  # is-system-running exits 1 when degraded
        hostname, system_state, machine_id, user, sudo_uid = result.stdout.split()
        assert hostname == host
        assert system_state in ("running", "degraded")
        assert (user, sudo_uid) == ("edge", "0")
        facts[host] = machine_id
        # sshd answers on the device's own address only, not on the host's 127.0.0.1
        listen = fleet.run(host, "ss -ltnH 'sport = :22'").stdout.split()
        assert f"{fleet.hosts[host]}:22" in listen, listen
    assert facts["edge-01"] != facts["edge-02"]

    known = fleet.known_hosts.read_text().splitlines()
    keys_by_address = {
        address: {line.split()[2] for line in known if line.startswith(address + " ")} for address in addresses
    }
    assert all(len(keys) == 3 for keys in keys_by_address.values())
    assert not keys_by_address[addresses[0]] & keys_by_address[addresses[1]], "devices share an SSH host key"


def test_host_keys_are_checked_for_real(edge_devices, tmp_path):
    fleet = edge_devices(count=2)
    first, second = fleet.hosts.values()
    # A known_hosts that lists edge-02's keys under edge-01's address must make SSH refuse edge-01.
    forged = tmp_path / "known_hosts"
    forged.write_text(
        "".join(
            line.replace(second, first, 1)
            for line in fleet.known_hosts.read_text().splitlines(keepends=True)
            if line.startswith(second + " ")
        )
    )
    result = subprocess.run(
        ["ssh", "-o", f"UserKnownHostsFile={forged}", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
         "-i", str(fleet.private_key), f"edge@{first}", "true"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr or "HOST IDENTIFICATION HAS CHANGED" in result.stderr


def test_ansible_reaches_devices_through_the_written_inventory(edge_devices, tmp_path):
    fleet = edge_devices(count=2)
    ping = subprocess.run(
        [str(VENV_BIN / "ansible"), "edge_devices", "-i", str(fleet.inventory), "-m", "ansible.builtin.ping", "-o"],
        capture_output=True, text=True, env=ansible_env(), timeout=180, check=False,
    )  # fmt: skip
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert ping.stdout.count("SUCCESS") == 2

    playbook = tmp_path / "become.yml"
    playbook.write_text(
        "- name: Write a root-owned file with become\n"
        "  hosts: edge_devices\n"
        "  tasks:\n"
        "    - name: Marker file\n"
        "      ansible.builtin.copy:\n"
        "        dest: /etc/edgeml-testbed-marker\n"
        '        content: "{{ inventory_hostname }}\\n"\n'
        "        owner: root\n"
        "        mode: '0600'\n"
    )
    for expect_changed in (1, 0):  # a second run changes nothing
        run = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory), str(playbook)],
            capture_output=True, text=True, env=ansible_env(), timeout=300, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.count(f"changed={expect_changed} ") == 2, run.stdout
    for host in fleet.hosts:
        assert fleet.run(host, "sudo stat -c '%U %a' /etc/edgeml-testbed-marker").stdout.split() == ["root", "600"]
        assert fleet.run(host, "sudo cat /etc/edgeml-testbed-marker").stdout.strip() == host


def test_down_leaves_nothing_behind():
    bed = EdgeDeviceBed(unique_bed("down"), count=2).up()
    try:
        traces = bed_traces(bed)
        assert traces["dir"] and len(traces["mounts"]) == 2 and len(traces["containers"]) == 2
        assert traces["leases"] == sorted(bed.hosts.values())
        assert (bed.dir / "bed.json").exists()
        state = json.loads((bed.dir / "bed.json").read_text())
        assert [d["address"] for d in state["devices"]] == list(bed.hosts.values())
    finally:
        bed.down()
    assert bed_traces(bed) == NOTHING_LEFT
    assert not bed.inventory.exists()
    bed.down()  # a second down is harmless


def test_beds_of_killed_runs_are_cleaned_and_the_next_up_works():
    killed_by_name = EdgeDeviceBed(unique_bed("killed"), count=1).up()
    killed_stale = EdgeDeviceBed(unique_bed("stale"), count=1).up()
    alive = EdgeDeviceBed(unique_bed("alive"), count=1).up()
    try:
        for bed in (killed_by_name, killed_stale):
            os.kill(bed.devices[0].pid, signal.SIGKILL)
            # a SIGKILLed nspawn leaves its container (and sshd) running: that is what down must handle
            assert bed.devices[0].leader_alive()

        result = run_testbed_cli("down", "--bed", killed_by_name.name)
        assert result.returncode == 0, result.stderr
        assert bed_traces(killed_by_name) == NOTHING_LEFT

        result = run_testbed_cli("down", "--stale")
        assert result.returncode == 0, result.stderr
        assert f"removed stale bed {killed_stale.name}" in result.stdout
        assert bed_traces(killed_stale) == NOTHING_LEFT
        # a live bed beside them is left alone
        assert alive.dir.exists() and alive.run("edge-01", "true").returncode == 0

        again = EdgeDeviceBed(killed_by_name.name, count=1).up()
        try:
            assert again.run("edge-01", "hostname").stdout.strip() == "edge-01"
        finally:
            again.down()
    finally:
        for bed in (killed_by_name, killed_stale, alive):
            bed.down()


def test_down_all_cleans_every_bed_of_its_root_killed_or_not(tmp_path, edge_devices):
    # A root of our own: `down --all` in the shared root would stop other people's beds.
    root = tmp_path / "beds"
    outside = edge_devices(count=1)  # in the shared root: must survive
    killed = EdgeDeviceBed("killed", count=1, root=root).up()
    healthy = EdgeDeviceBed("healthy", count=1, root=root).up()
    try:
        os.kill(killed.devices[0].pid, signal.SIGKILL)
        result = run_testbed_cli("down", "--all", root=root)
        assert result.returncode == 0, result.stderr
        assert "removed bed killed" in result.stdout and "removed bed healthy" in result.stdout
        assert bed_traces(killed) == NOTHING_LEFT
        assert bed_traces(healthy) == NOTHING_LEFT
        assert run_testbed_cli("status", root=root).stdout.strip() == "no beds"
        assert outside.run("edge-01", "true").returncode == 0
    finally:
        killed.down()
        healthy.down()


def test_beds_of_a_killed_test_run_are_reaped_by_the_next_up(tmp_path):
    """A pytest run killed mid-test leaves its bed running; the next `up` removes it."""
    name = unique_bed("orphan")
    ready = tmp_path / "ready"
    owner = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from testbed.edge_devices import EdgeDeviceBed; "
         f"EdgeDeviceBed({name!r}, count=1, tied_to_process=True).up(); Path(sys.argv[1]).touch(); time.sleep(600)",
         str(ready)],
        cwd=REPO_ROOT, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(600):
            if ready.exists() or owner.poll() is not None:
                break
            time.sleep(0.2)
        assert ready.exists(), "the owner process did not boot its bed"
        orphan = EdgeDeviceBed.load(name)
        owner.kill()
        owner.wait()
        assert orphan.devices[0].leader_alive() and address_in_use(orphan.devices[0].address)

        with EdgeDeviceBed(unique_bed("next"), count=1) as following:
            assert following.run("edge-01", "true").returncode == 0
        assert bed_traces(orphan) == NOTHING_LEFT
    finally:
        if owner.poll() is None:
            owner.kill()
        EdgeDeviceBed.load(name).down()


def test_duplicate_bed_name_is_refused_clearly(edge_devices):
    fleet = edge_devices(count=1)
    result = run_testbed_cli("up", "--count", "1", "--bed", fleet.name)
    assert result.returncode == 1
    assert f"a bed named {fleet.name!r} already exists" in result.stderr
    assert f"down --bed {fleet.name}" in result.stderr
    assert fleet.run("edge-01", "true").returncode == 0  # the existing bed is untouched


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad Name"}, "bed name 'Bad Name' is not valid"),
        ({"name": "leases"}, "bed name 'leases' is not valid"),
        ({"name": "ok", "count": 0}, "count must be between 1 and"),
        ({"name": "ok", "prefix": "1x"}, "device name prefix '1x' is not valid"),
    ],
)
def test_bad_bed_parameters_are_refused_before_anything_is_made(kwargs, message):
    with pytest.raises(BedError, match=message):
        EdgeDeviceBed(**kwargs)
    assert not (STATE_ROOT / kwargs["name"]).exists() or kwargs["name"] == "leases"


def test_build_image_is_a_no_op_when_cached():
    marker = image_dir() / ".edgeml-image-complete"
    result = run_testbed_cli("build-image")
    assert result.returncode == 0, result.stderr
    before = marker.stat().st_mtime_ns
    result = run_testbed_cli("build-image")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(image_dir())
    assert marker.stat().st_mtime_ns == before


def test_build_image_names_what_is_missing(tmp_path):
    # a fresh cache forces a build; without debootstrap/systemd-nspawn on PATH it must say how to get them
    env = {**os.environ, "EDGEML_CACHE": str(tmp_path / "cache"), "PATH": str(tmp_path / "empty-bin")}
    result = subprocess.run(
        [sys.executable, "-m", "testbed.edge_devices", "build-image"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "missing debootstrap, systemd-nspawn" in result.stderr
    assert "apt-get install debootstrap systemd-container" in result.stderr
    assert not (tmp_path / "cache" / "images").exists() or not any((tmp_path / "cache" / "images").glob("debian12-*"))


def test_build_image_reports_an_unreachable_mirror(tmp_path):
    env = {**os.environ, "EDGEML_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "testbed.edge_devices", "build-image", "--mirror", "http://127.0.0.1:9/debian"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "the Debian mirror http://127.0.0.1:9/debian is unreachable" in result.stderr
    assert not any((tmp_path / "cache" / "images").glob("*debian12-*"))


def test_up_without_root_says_so(tmp_path):
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "testbed.edge_devices", "up", "--count", "1", "--bed", unique_bed("nonroot")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "needs root" in result.stderr
