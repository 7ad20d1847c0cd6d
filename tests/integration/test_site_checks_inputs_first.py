"""site.yml checks every role's inputs for a host before the first role writes anything.

A wrong input for a role late in the provisioning order (the detector, the MXNet runtime) used to be refused
only when that role's preflight ran, after iot_device_credentials had already made the device's thing,
certificate and policy in AWS and its private key on the device. The provisioning playbooks now run each
role's tasks/check_inputs.yml in their pre_tasks; these tests show a host refused there with the input
named, no request of any kind reaching AWS, and no file changed on the device.

Real parts only: one systemd-booted Debian 12 device reached over SSH (testbed), a fresh local AWS
endpoint that records every request it gets (tests/e2e/fleet.py), the repository's playbooks and roles.
The artefacts the checks look at on the controller (core/nucleus archives) are small files made here: the
runs stop before anything would read their content.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from testbed.edge_devices import EdgeDeviceBed, build_image
from tests.e2e.fleet import LOCAL_TESTBED_INVENTORY, SITE_PLAYBOOK, aws_clients, recording_endpoint
from tests.roles.playbook_json import PlaybookRun, run_playbook

pytestmark = [pytest.mark.devices, pytest.mark.aws]

# The first task of every role's own run (Ansible adds it): a host that shows it got past the pre_tasks.
ROLE_START = "Validating arguments against arg spec 'main'"
MARKER = "/run/edgeml-test-before-site"
# Paths whose changes are not the roles' doing: kernel and runtime state, logs (SSH logins), temp files.
NOT_WRITES = ["/proc", "/sys", "/dev", "/run", "/tmp", "/var/log", "/var/lib/systemd", "/var/lib/sudo"]
CHANGED_FILES = (
    "sudo find / -xdev \\( "
    + " -o ".join(f"-path {path}" for path in NOT_WRITES)
    + f" \\) -prune -o -newer {MARKER} -print"
)


@pytest.fixture(scope="module")
def device():
    if os.geteuid() != 0:
        pytest.skip("simulated edge devices need root (overlay mounts, systemd-nspawn)")
    build_image()  # a no-op when the image is cached
    bed = EdgeDeviceBed(f"pytest-{os.getpid()}-site-checks", count=1, prefix="chk", tied_to_process=True)
    bed.up()
    try:
        yield bed, next(iter(bed.hosts))
    finally:
        bed.down()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with recording_endpoint(tmp_path_factory.mktemp("aws")) as (aws, requests):
        yield aws, requests


@pytest.fixture(scope="module")
def good_vars(tmp_path_factory) -> dict:
    """Inputs with which every role's checks pass on the test device (the local_testbed inventory adds its own)."""
    files = tmp_path_factory.mktemp("artefacts")
    (files / "core-standin.tar.gz").write_bytes(b"checked by name and sha256 only: the run stops before install")
    (files / "nucleus-standin.zip").write_bytes(b"checked by name and sha256 only: the run stops before install")
    # The V2 detector's checks look into its model archive for the checkpoint's two files.
    model = files / "model.tar.gz"
    with tarfile.open(model, "w:gz") as archive:
        for name in ("deploy_model_algo_1-symbol.json", "deploy_model_algo_1-0000.params"):
            data = b"{}" if name.endswith(".json") else b"\0" * 16
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return {
        "greengrass_v1_core_archive_src": str(files / "core-standin.tar.gz"),
        "greengrass_v1_detector_model_s3_uri": "s3://edgeml-demo-models/models/model.tar.gz",
        "greengrass_v2_nucleus_archive_src": str(files / "nucleus-standin.zip"),
        "greengrass_v2_nucleus_version": "2.16.1",
        "greengrass_v2_detector_model_archive": str(model),
    }


def run_site(tmp_path: Path, fleet: EdgeDeviceBed, endpoint, host_vars: dict, *args: str) -> PlaybookRun:
    """site.yml on the device, its variables set as inventory host vars (where users set them, below play vars;
    above the local_testbed inventory's group_vars/all, which says edgeml_greengrass_generation v1)."""
    (host,) = fleet.hosts
    inventory = tmp_path / "inputs.yml"
    inventory.write_text(json.dumps({"all": {"children": {"edge_devices": {"hosts": {host: host_vars}}}}}, indent=2))
    env = dict(os.environ, **endpoint.environment())
    return run_playbook(
        SITE_PLAYBOOK, LOCAL_TESTBED_INVENTORY, "-i", str(fleet.inventory), "-i", str(inventory), *args, env=env
    )


def failed_task(run: PlaybookRun, host: str) -> tuple[str, str, str]:
    """(play, task, message) of the one failed task on host."""
    failed = [
        (play["play"]["name"], task["task"]["name"], str(task["hosts"][host].get("msg", "")))
        for play in run.output.get("plays", [])
        for task in play.get("tasks", [])
        if task["hosts"].get(host, {}).get("failed")
    ]
    assert len(failed) == 1, f"one failed task expected on {host}: {failed}\n{run.describe()}"
    return failed[0]


def mark(fleet: EdgeDeviceBed, host: str) -> None:
    done = fleet.run(host, f"sudo touch {MARKER} && sleep 1")
    assert done.returncode == 0, done.stderr


def changed_files(fleet: EdgeDeviceBed, host: str) -> list[str]:
    found = fleet.run(host, CHANGED_FILES)
    assert found.returncode == 0, found.stderr
    return found.stdout.split()


# The provisioning play of each generation, by a word of its name, and a check only that play has (its core's).
GENERATION_PLAY = {"v1": "Greengrass V1 core", "v2": "Greengrass V2 nucleus"}
GENERATION_CHECK = {
    "v1": "Preflight | Read the kernel's hardlink and symlink protection",
    "v2": "Preflight | Assert the nucleus version is a semantic version",
}

# (generation, the one wrong input, the task that must refuse it, what its message must say)
BAD_INPUTS = [
    pytest.param(
        "v1",
        {"greengrass_v1_detector_score_threshold": 2.0},
        "greengrass_v1_detector : Inference settings",
        ["greengrass_v1_detector_score_threshold must be 0..1 (got 2.0)"],
        id="v1-detector-score-threshold",
    ),
    pytest.param(
        "v1",
        {"greengrass_v1_detector_function_memory_size": "lots"},
        "greengrass_v1_detector : Check the inputs against the argument spec",
        ["greengrass_v1_detector_function_memory_size", "unable to convert to int"],
        id="v1-detector-argument-type",
    ),
    pytest.param(
        "v1",
        {"inference_runtime_wheelhouse_src": "/nonexistent/wheelhouse"},
        "inference_runtime : Preflight | Check the wheelhouse on the controller",
        ["inference_runtime_wheelhouse_src must be a directory", '"/nonexistent/wheelhouse" is not a directory'],
        id="v1-runtime-wheelhouse",
    ),
    pytest.param(
        "v2",
        {"greengrass_v2_detector_score_threshold": 1.5},
        "greengrass_v2_detector : Inference settings are in range",
        # The V2 detector's message names its inputs after the role's prefix, once.
        ["greengrass_v2_detector: expected", "_score_threshold 0..1 (1.5)"],
        id="v2-detector-score-threshold",
    ),
]


@pytest.mark.parametrize(("generation", "bad", "task", "words"), BAD_INPUTS)
def test_a_bad_input_for_a_later_role_refuses_the_host_before_any_write(
    tmp_path, device, endpoint, good_vars, generation, bad, task, words
):
    fleet, host = device
    aws, requests = endpoint
    since = requests.mark()
    mark(fleet, host)

    run = run_site(tmp_path, fleet, aws, {**good_vars, "edgeml_greengrass_generation": generation, **bad})

    assert run.returncode != 0, run.describe()
    assert run.stats(host).get("failures") == 1, run.describe()
    play, name, message = failed_task(run, host)
    assert GENERATION_PLAY[generation] in play, play
    assert name.endswith(task), (name, message)
    assert all(said in message for said in words), message
    # Refused in the pre_tasks: no role started on the host (iot_device_credentials is the first).
    started = [t for t in run.task_names(host, include_skipped=True) if t.startswith(ROLE_START)]
    assert started == [], started
    # Nothing reached AWS (no thing, certificate or policy; not even a read)...
    assert requests.calls(since=since) == []
    # ...and nothing was written on the device.
    assert changed_files(fleet, host) == []


def test_the_same_inputs_without_the_bad_one_pass_every_check(tmp_path, device, endpoint, good_vars):
    """The control: the inputs above pass all the pre_tasks' checks, so each refusal was its bad input's.

    `--tags checks` selects no role task: the pre_tasks (tagged always) run in full, then only the tasks
    that run under any tag (argument validation, the preflights, which skip what the pre_tasks checked).
    """
    fleet, host = device
    aws, requests = endpoint
    for generation in ("v1", "v2"):
        since = requests.mark()
        mark(fleet, host)
        inputs = {**good_vars, "edgeml_greengrass_generation": generation}
        run = run_site(tmp_path, fleet, aws, inputs, "--tags", "checks")
        assert run.returncode == 0, run.describe()
        stats = run.stats(host)
        assert stats.get("failures") == 0 and stats.get("changed") == 0, (generation, stats)
        ran = run.task_names(host)
        checks = [
            "Inference settings",
            "Preflight | Check the backend and the pinned versions",
            GENERATION_CHECK[generation],
        ]
        for check in checks:
            assert any(name.startswith(check) for name in ran), (generation, check, ran)
        assert requests.calls(since=since) == []
        assert changed_files(fleet, host) == []

    # The device check sees a write: a file made after the mark is listed.
    made = fleet.run(host, "sudo install -d /opt/edgeml-test-probe")
    assert made.returncode == 0, made.stderr
    try:
        assert "/opt/edgeml-test-probe" in changed_files(fleet, host)
    finally:
        fleet.run(host, "sudo rmdir /opt/edgeml-test-probe")

    # The record is live: a request made here is in it.
    since = requests.mark()
    aws_clients(aws)("iot").list_things()
    assert [call.operation for call in requests.calls(since=since)] == ["ListThings"]
