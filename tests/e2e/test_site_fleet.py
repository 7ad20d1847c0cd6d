"""End to end: playbooks/site.yml on a fleet of three simulated devices, as `scripts/demo.sh` runs it.

The fleet is the demo's: inventories/local_testbed decides each device's Greengrass generation
(edge-01 and edge-02 on V1, edge-03 a V2 core device), and the checks follow what it says.

Real parts only: systemd-booted Debian 12 devices reached over SSH (testbed), a fresh local
AWS-compatible endpoint that records every request it gets, the demo's artefacts (stand-in core archive,
small real MXNet model, wheelhouse). One fleet and one endpoint serve the whole module; the tests run
in order and each reads the state the previous runs left:

1. first run, through the fault proxy (30% of AWS calls throttled with each service's own error and 5% failed with
   its internal error, seeded: issue 14's scenario), with one device given a bad per-host input (edgeml_gpu:
   true on a CPU-only device): the other two complete in this one run; the bad one is refused by the
   provisioning play's input checks (every role's, before the first role writes), so nothing exists for it in
   AWS (thing, certificate, policy) or on it;
2. the input fixed, a re-run completes the fleet (the bad device from scratch): exactly one of each resource in
   AWS, so the faults of the first run left nothing duplicated or orphaned;
3. a third run, through ansible-runner as AWX runs it (runner/, the event stream read as AWX reads it), from the
   execution environment (execution-environment.yml: the built collection, its dependencies and Python
   requirements only, tests/execution_environment.py), changes nothing on any host and makes no AWS write call;
4. the smoke test runs the deployed detector on a device and brings back its detections;
5. the devices' private keys never reached the controller or AWS, and are 0600 on the devices;
6. playbooks/decommission.yml with the fleet-wide flag: check mode writes nothing; the real run leaves the endpoint
   as it was before the first run (every resource type site.yml makes, counted) and no Greengrass on the devices;
   a second run changes nothing and writes nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from testbed.edge_devices import EdgeDeviceBed
from testbed.fault_proxy import FaultPlan, FaultProxy
from tests import execution_environment
from tests.e2e.fleet import (
    DECOMMISSION_PLAYBOOK,
    REPO_ROOT,
    SITE_PLAYBOOK,
    SMOKE_TEST_PLAYBOOK,
    TimedRun,
    aws_clients,
    aws_inventory,
    build_artefacts,
    device_bed,
    expected_detections,
    host_vars_inventory,
    inventory_generation,
    load_average,
    run_site,
    run_site_with_runner,
)

pytestmark = [pytest.mark.devices, pytest.mark.aws, pytest.mark.slow]

DEVICE_COUNT = 3
HOSTS = [f"edge-{index:02d}" for index in range(1, DEVICE_COUNT + 1)]
GENERATION = {host: inventory_generation(host) for host in HOSTS}
V1_HOSTS = [host for host in HOSTS if GENERATION[host] == "v1"]
V2_HOSTS = [host for host in HOSTS if GENERATION[host] == "v2"]
# The first host on purpose: it is also the one that would make the fleet-wide resources (the fleet's Lambda and
# model) had it not been refused, and smoke_test.yml's device (edge_devices[0]), so the re-run must really finish it.
BAD_HOST = HOSTS[0]
GOOD_HOSTS = HOSTS[1:]
FUNCTION_NAME = "edgeml-object-detector"
V2_THING_GROUP = "edgeml-demo-detectors"  # greengrass_v2_detector_thing_group in the demo inventory
PRIVATE_KEY = "/greengrass/certs/device.private.key"
# What each generation's core install leaves (both run as greengrass.service).
CORE_INSTALLED = {"v1": "/greengrass/ggc/core/greengrassd", "v2": "/greengrass/v2/alts/current"}
CORE_UNIT = "/etc/systemd/system/greengrass.service"
# The first task of every role's own run (Ansible adds it): a host that has it got past the input checks.
ROLE_START = "Validating arguments against arg spec 'main'"


# --------------------------------------------------------------------------- module-wide fleet


@pytest.fixture(scope="module")
def endpoint(recorded_endpoint):
    # Here the endpoint comes with its request log: the runs' AWS calls are counted.
    return recorded_endpoint


@pytest.fixture(scope="module")
def client(endpoint):
    return aws_clients(endpoint[0])


@pytest.fixture(scope="module")
def fleet(endpoint):
    # The V2 device's nucleus follows its deployment through the bed and reports it (the demo does the same).
    with device_bed("e2e-site-fleet", count=DEVICE_COUNT, endpoint=endpoint[0]) as bed:
        yield bed


@pytest.fixture(scope="module")
def extra_vars_file(workdir) -> Path:
    artefacts = build_artefacts(workdir / "artefacts")
    # The Lambda package is built on the controller from the inference code; build it from a copy taken
    # now, so that an edit to files/inference_lambda during the module (a shared checkout) cannot turn
    # the re-runs into real code updates, and keep the zip apart from the demo's cached one.
    source = workdir / "inference_lambda"
    shutil.copytree(
        REPO_ROOT / "files" / "inference_lambda", source, ignore=shutil.ignore_patterns("__pycache__", ".*")
    )
    artefacts["greengrass_v1_detector_source_dir"] = str(source)
    artefacts["greengrass_v1_detector_package_path"] = str(workdir / "package" / f"{FUNCTION_NAME}.zip")
    path = workdir / "artefacts.json"
    path.write_text(json.dumps(artefacts, indent=2) + "\n")
    return path


@pytest.fixture(scope="module")
def env(endpoint, workdir) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(endpoint[0].environment())
    # Ansible's controller-side temp files land where the secrets check can read them.
    environment["ANSIBLE_LOCAL_TEMP"] = str(workdir / "ansible-local-tmp")
    return environment


class Runs(dict):
    """Every playbook run of the module by name; each one's JSON output is kept in the workdir."""

    def __init__(self, workdir: Path):
        super().__init__()
        self.workdir = workdir

    def __setitem__(self, name: str, run: TimedRun) -> None:
        super().__setitem__(name, run)
        (self.workdir / f"run-{name}.json").write_text(run.output_text())
        print(f"\n{name} run: {run.seconds:.0f} s, recap {run.recap}, load average {load_average()}")


@pytest.fixture(scope="module")
def runs(workdir) -> Runs:
    return Runs(workdir)


@pytest.fixture(scope="module")
def first_run_faults() -> FaultPlan:
    """What the fault proxy does to the first run's AWS calls (the other runs go straight to the endpoint)."""
    return FaultPlan(throttle=0.3, error=0.05, seed=14)


@pytest.fixture(scope="module")
def pristine(endpoint, client) -> dict:
    """What the endpoint holds before site.yml ran (decommissioning returns to it)."""
    return aws_inventory(client)


@pytest.fixture(scope="module")
def first_run(pristine, fleet, extra_vars_file, env, client, runs, workdir, endpoint, first_run_faults):
    # A realistic per-host input error: the inventory says this CPU-only device has a GPU.
    bad_input = host_vars_inventory(workdir / "bad_input.yml", {BAD_HOST: {"edgeml_gpu": True}})
    with FaultProxy(endpoint[0].url, first_run_faults) as proxy:
        through_faults = dict(env, AWS_ENDPOINT_URL=proxy.url)
        runs["first"] = run_site(SITE_PLAYBOOK, [fleet.inventory, bad_input], extra_vars_file, through_faults)
    return runs["first"], aws_inventory(client)


@pytest.fixture(scope="module")
def second_run(first_run, fleet, extra_vars_file, env, client, runs):
    runs["second"] = run_site(SITE_PLAYBOOK, [fleet.inventory], extra_vars_file, env)
    return runs["second"], aws_inventory(client)


@pytest.fixture(scope="module")
def third_run(second_run, fleet, extra_vars_file, env, client, endpoint, runs, workdir, tmp_path_factory):
    requests = endpoint[1]
    before = aws_inventory(client)
    mark = requests.mark()
    # The execution environment's ansible-playbook, Python packages and collections (the built collection, not this
    # checkout): what AWX runs the job in.
    # Built outside the workdir: the installed collection's own sources (tests, molecule) mention "PRIVATE KEY", which
    # the secrets check of the workdir would report.
    ee = execution_environment.build(tmp_path_factory.mktemp("execution-environment"))
    runs["third"] = run_site_with_runner(
        SITE_PLAYBOOK, [fleet.inventory], extra_vars_file, ee.environment(env), workdir / "runner-third", ee.bin
    )
    calls = requests.calls(since=mark)
    return runs["third"], before, aws_inventory(client), calls, ee


@pytest.fixture(scope="module")
def smoke_run(third_run, fleet, extra_vars_file, env, workdir, runs, endpoint):
    results = workdir / "smoke-results"
    # The MQTT client's way to the bed's broker, as the demo gives it (aws_endpoint's mqtt_client.json).
    extra_vars = {"smoke_test_results_dir": str(results), **endpoint[0].mqtt_client_vars(workdir)}
    runs["smoke"] = run_site(SMOKE_TEST_PLAYBOOK, [fleet.inventory], extra_vars_file, env, extra_vars=extra_vars)
    return runs["smoke"], results


# --------------------------------------------------------------------------- helpers


def device(fleet: EdgeDeviceBed, host: str, command: str) -> str:
    result = fleet.run(host, command)
    assert result.returncode == 0, f"{host}: `{command}` exited {result.returncode}: {result.stderr.strip()}"
    return result.stdout.strip()


def core_state(fleet: EdgeDeviceBed, host: str) -> dict[str, str]:
    """Whether the host's Greengrass core (of its generation) is installed and its service active."""
    return {
        "installed": fleet.run(host, f"sudo test -e {CORE_INSTALLED[GENERATION[host]]}").returncode == 0,
        "unit": fleet.run(host, f"test -f {CORE_UNIT}").returncode == 0,
        "active": fleet.run(host, "systemctl is-active greengrass.service").stdout.strip(),
    }


RUNNING = {"installed": True, "unit": True, "active": "active"}


def assert_provisioned_in_aws(inventory: dict, host: str) -> None:
    assert host in inventory["things"], f"no IoT thing {host}: {sorted(inventory['things'])}"
    principals = inventory["things"][host]
    assert len(principals) == 1, f"{host} should have exactly one certificate attached, has {principals}"
    assert inventory["certificates"].get(principals[0]) == "ACTIVE", f"{host}'s certificate is not ACTIVE"
    if GENERATION[host] == "v1":
        group = inventory["groups"].get(f"{host}-group")
        assert group, f"no Greengrass V1 group {host}-group: {sorted(inventory['groups'])}"
        assert group["latest_version"], f"{host}-group has no version"
        assert len(group["deployments"]) == 1, f"{host}-group should have one deployment: {group['deployments']}"
    else:
        assert V2_THING_GROUP in inventory["thing_groups"][host], f"{host}: {inventory['thing_groups'][host]}"
        active = [d for d in inventory["v2_deployments"] if d[0] == V2_THING_GROUP and d[2] == "ACTIVE"]
        assert len(active) == 1, f"one active V2 deployment to {V2_THING_GROUP} expected: {inventory['v2_deployments']}"


# --------------------------------------------------------------------------- 1. one failure, the others finish


def test_first_run_provisions_the_healthy_devices_despite_one_bad_input_and_aws_faults(
    first_run, fleet, first_run_faults
):
    run, inventory = first_run
    injected = first_run_faults.counts()
    assert injected.get("throttle", 0) > 20 and injected.get("error", 0) > 2, injected
    assert set(run.recap) == set(HOSTS), run.describe()
    for host in GOOD_HOSTS:
        stats = run.recap[host]
        assert stats["failures"] == 0 and stats["unreachable"] == 0, f"{host}: {stats}\n{run.describe()}"
        assert stats["changed"] > 0, f"{host}: a first run on a bare device must change it: {stats}"
        assert_provisioned_in_aws(inventory, host)
        state = core_state(fleet, host)
        assert state == RUNNING, f"{host}'s Greengrass {GENERATION[host]} core: {state}"
    # The fleet-wide Lambda was made although the play's first host had failed.
    assert list(inventory["functions"]) == [FUNCTION_NAME], inventory["functions"]


def test_first_run_refuses_the_bad_device_before_anything_is_written(first_run, fleet, endpoint):
    run, inventory = first_run
    assert run.run.returncode != 0, "a run with a failed host must exit non-zero"
    assert run.recap[BAD_HOST]["failures"] == 1, run.describe()
    failures = run.host_failures(BAD_HOST)
    assert len(failures) == 1, failures
    # The message names the input that is wrong, the host, and what the host lacks.
    assert "nvidia_driver_cuda_require_gpu" in failures[0], failures
    assert f"{BAD_HOST} has no NVIDIA GPU" in failures[0], failures
    # Refused by the play's input checks: no role started on the host, iot_device_credentials included.
    started = [name for name in run.run.task_names(BAD_HOST, include_skipped=True) if name.startswith(ROLE_START)]
    assert started == [], started

    # Nothing for it in AWS: no thing, no certificate, no policy, no group; no request named it.
    assert BAD_HOST not in inventory["things"], sorted(inventory["things"])
    good_certificates = {principal for host in GOOD_HOSTS for principal in inventory["things"][host]}
    assert set(inventory["certificates"]) == good_certificates, inventory["certificates"]
    assert f"{BAD_HOST}-policy" not in inventory["policies"], inventory["policies"]
    assert [policy for policy in inventory["policies"] if BAD_HOST in policy] == [], inventory["policies"]
    assert f"{BAD_HOST}-group" not in inventory["groups"], "the failed device got a Greengrass group"
    assert [body[:200] for body in endpoint[1].bodies() if BAD_HOST in body] == []

    # Nothing on the device: no credentials folder (so no private key), no core.
    assert fleet.run(BAD_HOST, f"sudo test -e {PRIVATE_KEY}").returncode == 1, f"{BAD_HOST} has {PRIVATE_KEY}"
    assert fleet.run(BAD_HOST, "sudo test -e /greengrass").returncode == 1, f"{BAD_HOST} has /greengrass"
    assert core_state(fleet, BAD_HOST) == {"installed": False, "unit": False, "active": "inactive"}


# --------------------------------------------------------------------------- 2. the re-run completes the fleet


def test_rerun_completes_the_fleet_without_duplicates_in_aws(first_run, second_run, fleet):
    run, inventory = second_run
    assert run.run.returncode == 0, run.describe()
    for host in HOSTS:
        assert run.recap[host]["failures"] == 0 and run.recap[host]["unreachable"] == 0, run.describe()
        assert_provisioned_in_aws(inventory, host)
        state = core_state(fleet, host)
        assert state == RUNNING, f"{host}'s Greengrass {GENERATION[host]} core: {state}"

    assert sorted(inventory["things"]) == HOSTS
    assert len(inventory["certificates"]) == DEVICE_COUNT, inventory["certificates"]
    assert set(inventory["certificates"].values()) == {"ACTIVE"}, inventory["certificates"]
    # Greengrass V1: one group (and one of each definition) per V1 device, one Lambda with one version.
    assert sorted(inventory["groups"]) == [f"{host}-group" for host in V1_HOSTS]
    for kind, count in inventory["definitions"].items():
        assert count == len(V1_HOSTS), f"{kind} definitions for {len(V1_HOSTS)} groups: {inventory['definitions']}"
    assert list(inventory["functions"]) == [FUNCTION_NAME], inventory["functions"]
    assert inventory["functions"][FUNCTION_NAME]["published_versions"] == ["1"], inventory["functions"]
    if V2_HOSTS:  # Greengrass V2: one version of each component, one deployment to the thing group
        components = inventory["components"]
        assert components and all(len(versions) == 1 for versions in components.values()), components
        assert len(inventory["v2_deployments"]) == 1, inventory["v2_deployments"]

    # What the first run finished is left as it was: the healthy devices' groups and deployments get
    # nothing new, no object is uploaded twice. The bad device's identity was made by this run only.
    first_inventory = first_run[1]
    assert BAD_HOST not in first_inventory["things"]
    assert f"{BAD_HOST}-policy" in inventory["policies"], inventory["policies"]
    assert inventory["objects"] == first_inventory["objects"]
    assert inventory["v2_deployments"] == first_inventory["v2_deployments"]
    assert inventory["components"] == first_inventory["components"]
    for host in GOOD_HOSTS:
        if GENERATION[host] == "v1":
            assert inventory["groups"][f"{host}-group"] == first_inventory["groups"][f"{host}-group"], host
        assert run.recap[host]["changed"] == 0, f"{host} was complete; the re-run changed {run.changed_tasks()}"


# --------------------------------------------------------------------------- 3. a third run is a no-op


def test_third_run_changes_nothing_and_writes_nothing_to_aws(third_run):
    run, before, after, calls, ee = third_run
    assert (run.rc, run.status) == (0, "successful"), run.describe()
    # The roles ran from the collection installed in the execution environment, not from this checkout.
    task_paths = {e["event_data"].get("task_path", "") for e in run.of("runner_on_ok")}
    role_tasks = {path for path in task_paths if "/roles/" in path}
    assert role_tasks and all(path.startswith(f"{ee.collections}/") for path in role_tasks), sorted(role_tasks)[:5]
    # The event stream, as AWX reads it: each host's task results, no failure, then the stats.
    assert {e["event_data"]["host"] for e in run.of("runner_on_ok")} == set(HOSTS), run.describe()
    failed = [e for e in run.of("runner_on_failed") if not e["event_data"].get("ignore_errors")]
    assert failed + run.of("runner_on_unreachable") == [], run.describe()
    assert run.events[-1]["event"] == "playbook_on_stats", run.events[-1]
    assert {host: run.stats["changed"].get(host, 0) for host in HOSTS} == dict.fromkeys(HOSTS, 0), run.changed_tasks()
    assert all(run.stats["ok"].get(host, 0) > 0 for host in HOSTS) and not run.stats["failures"], run.stats
    # The request log is live: the run read AWS (idempotence is checked against it)...
    assert len(calls) > DEVICE_COUNT, f"the endpoint recorded only {calls}"
    # ...and wrote nothing.
    writes = [str(call) for call in calls if call.is_write]
    assert writes == [], f"{len(writes)} AWS write calls on a run that should change nothing: {writes}"
    assert after == before


# --------------------------------------------------------------------------- 4. smoke test


def test_smoke_test_every_device_answers_over_mqtt_through_greengrass(smoke_run, extra_vars_file):
    """The seed's final check on the mixed fleet: one request on the input topic, and each device (V1 cores through
    their group's subscriptions and detector Lambda, V2 devices through the nucleus's IPC) answers on the output
    topic with its thing name and the sample's boxes."""
    run, results = smoke_run
    assert run.run.returncode == 0, run.describe()
    expected = expected_detections()
    assert sorted(expected) == ["blue_box", "yellow_box"]
    for host in HOSTS:
        answer = json.loads((results / f"{host}-mqtt-detections.json").read_text())
        assert answer["thing_name"] == host, answer
        found = {d["label"]: tuple(d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")) for d in answer["detections"]}
        assert len(answer["detections"]) == len(expected), answer
        assert sorted(found) == sorted(expected), answer
        for label, box in expected.items():
            assert found[label] == pytest.approx(box, abs=1e-3), f"{host} {label}: {found[label]} != {box}"
        # V2 answers name the component version; V1 answers come from the Lambda version the group deploys.
        if host in V2_HOSTS:
            assert answer["component"]["name"] == "com.edgeml.ObjectDetector", answer
        else:
            assert "component" not in answer, answer

    sample_path = json.loads(extra_vars_file.read_text())["smoke_test_image"]
    for host in HOSTS:
        assert_boxes_drawn_on(results / f"{host}-mqtt-annotated.png", sample_path)


def test_v1_deployments_are_reported_by_the_cores(smoke_run, client):
    """The V1 deployment status site.yml waited for is the one each stand-in core reported (no test-bed control)."""
    gg = client("greengrass")
    for host in V1_HOSTS:
        group = next(g for g in gg.list_groups()["Groups"] if g["Name"] == f"{host}-group")
        deployments = gg.list_deployments(GroupId=group["Id"])["Deployments"]
        assert deployments, f"{host}: no deployment"
        status = gg.get_deployment_status(GroupId=group["Id"], DeploymentId=deployments[-1]["DeploymentId"])
        assert status["DeploymentStatus"] == "Success", (host, status)


def test_v1_core_that_was_off_during_a_deployment_picks_it_up_when_back(smoke_run, fleet, client):
    """A V1 core asks for its latest deployment whenever it connects: one made while it was stopped stays
    InProgress, then Success once the core runs again, and the detector answers afterwards."""
    host = V1_HOSTS[-1]
    gg = client("greengrass")
    group = next(g for g in gg.list_groups()["Groups"] if g["Name"] == f"{host}-group")
    assert fleet.run(host, "sudo systemctl stop greengrass.service").returncode == 0
    try:
        deployment = gg.create_deployment(
            GroupId=group["Id"], GroupVersionId=group["LatestVersion"], DeploymentType="NewDeployment"
        )
        time.sleep(3)
        status = gg.get_deployment_status(GroupId=group["Id"], DeploymentId=deployment["DeploymentId"])
        assert status["DeploymentStatus"] == "InProgress", status
    finally:
        started = fleet.run(host, "sudo systemctl start greengrass.service")
        assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = gg.get_deployment_status(GroupId=group["Id"], DeploymentId=deployment["DeploymentId"])
        if status["DeploymentStatus"] != "InProgress":
            break
        time.sleep(1)
    assert status["DeploymentStatus"] == "Success", status


def assert_boxes_drawn_on(annotated_path: Path, sample_path: str) -> None:
    assert annotated_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{annotated_path.name} is not a PNG"
    annotated, sample = cv2.imread(str(annotated_path)), cv2.imread(sample_path)
    assert annotated is not None, f"OpenCV cannot read {annotated_path}"
    assert annotated.shape == sample.shape, f"{annotated_path.name}: {annotated.shape} vs sample {sample.shape}"
    assert not np.array_equal(annotated, sample), f"nothing was drawn on {annotated_path.name}"


# --------------------------------------------------------------------------- 5. secrets


def controller_files_mentioning(roots: list[Path], needles: list[str]) -> list[str]:
    found = []
    for root in roots:
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            text = path.read_bytes().decode("utf-8", errors="replace")
            found += [f"{path}: {needle[:12]}..." for needle in needles if needle in text]
    return found


def test_private_keys_stay_on_the_devices_and_are_0600(smoke_run, fleet, endpoint, runs, workdir):
    key_lines = []
    for host in HOSTS:
        mode = device(fleet, host, f"sudo stat -c '%a %U' {PRIVATE_KEY}")
        assert mode == "600 root", f"{host}:{PRIVATE_KEY} is {mode}, expected 600 root"
        # Every PEM private key file under /greengrass, wherever the roles put copies (V2: the nucleus's).
        keys = device(fleet, host, "sudo grep -rl --include='*key*' -- 'PRIVATE KEY-----' /greengrass").split()
        assert PRIVATE_KEY in keys, f"{host}: {keys}"
        for key in keys:
            assert device(fleet, host, f"sudo stat -c %a {key}") == "600", f"{host}:{key} is not 0600"
        # The key's base64 lines, kept in memory only, to look for on the controller.
        pem = device(fleet, host, f"sudo cat {PRIVATE_KEY}")
        key_lines += [line for line in pem.splitlines() if re.fullmatch(r"[A-Za-z0-9+/=]{40,}", line)]
    assert len(key_lines) >= DEVICE_COUNT, "could not read the devices' keys"
    needles = ["PRIVATE KEY", *key_lines]

    assert set(runs) == {"first", "second", "third", "smoke"}
    assert len(list(workdir.glob("run-*.json"))) == len(runs)
    for name, run in runs.items():
        text = run.output_text()
        leaked = [needle[:12] for needle in needles if needle in text]
        assert leaked == [], f"the {name} run's output holds private key material: {leaked}"

    # The run's working files: artefacts, Lambda package, fetched results, Ansible's local temp,
    # the endpoint's log and its record of every request (bodies included) that reached AWS.
    scanned = sorted(p for p in workdir.rglob("*") if p.is_file())
    assert any(p.name == "aws_requests.jsonl" for p in scanned) and len(scanned) > 5, scanned
    # One private key belongs on the controller: the smoke test's MQTT client's own (made there, 0600), which
    # is none of the devices' keys.
    client_key = workdir / "smoke-results" / ".mqtt-client" / "client.key.pem"
    assert oct(client_key.stat().st_mode & 0o777) == "0o600", client_key
    assert controller_files_mentioning([client_key], key_lines) == []
    found = controller_files_mentioning([workdir], needles)
    assert found == [f"{client_key}: PRIVATE KEY..."], found
    sent = list(endpoint[1].bodies())
    assert len(sent) > 100, f"only {len(sent)} requests recorded"
    assert [body[:200] for body in sent if any(needle in body for needle in needles)] == []
    # The scan does find a private key where there is one: the bed's own SSH key (the controller's).
    assert controller_files_mentioning([fleet.private_key], ["PRIVATE KEY"]) != []


# --------------------------------------------------------------------------- 6. decommissioning


@pytest.fixture(scope="module")
def decommissioned(smoke_run, fleet, extra_vars_file, env, client, endpoint, workdir):
    requests = endpoint[1]
    asked = {"edgeml_decommission": True, "edgeml_decommission_fleet": True}
    runs = {}
    before = aws_inventory(client)
    for name, options in (("check", ("--check",)), ("real", ()), ("again", ())):
        mark = requests.mark()
        run = run_site(
            DECOMMISSION_PLAYBOOK, [fleet.inventory], extra_vars_file, env, extra_vars=asked, options=options
        )
        (workdir / f"decommission-{name}.json").write_text(run.output_text())
        runs[name] = (run, requests.calls(since=mark), aws_inventory(client))
    return before, runs


def test_decommissioning_removes_everything_site_yml_made_and_changes_nothing_the_second_time(
    decommissioned, pristine, fleet
):
    before, runs = decommissioned
    check, check_calls, after_check = runs["check"]
    assert check.run.returncode == 0, check.describe()
    assert all(check.recap[host]["changed"] > 0 for host in HOSTS), check.recap
    assert [str(call) for call in check_calls if call.is_write] == [], "check mode wrote to AWS"
    assert after_check == before

    real, _calls, after = runs["real"]
    assert real.run.returncode == 0, real.describe()
    # Every resource type site.yml makes (things, thing groups, certificates, policies, V1 groups and definitions,
    # Lambdas, V2 components, deployments and core devices, role aliases, IAM roles, buckets and objects) back to the
    # count and names it had before the first run: nothing orphaned.
    assert before["things"] and before["components"] and before["functions"], before
    assert after == pristine, {key: after[key] for key in after if after[key] != pristine[key]}
    for host in HOSTS:
        left = fleet.run(host, f"sudo ls -d /greengrass {CORE_UNIT} 2>&1; systemctl is-active greengrass.service")
        assert "No such file or directory" in left.stdout and "/greengrass\n" not in left.stdout, (host, left.stdout)
        assert left.stdout.strip().endswith(("inactive", "unknown")), (host, left.stdout)
        # The inference runtime stays: it is no part of Greengrass.
        assert fleet.run(host, "test -x /opt/edgeml/inference-venv/bin/python").returncode == 0, host

    again, again_calls, after_again = runs["again"]
    assert again.run.returncode == 0, again.describe()
    assert {host: again.recap[host]["changed"] for host in HOSTS} == dict.fromkeys(HOSTS, 0), again.changed_tasks()
    assert [str(call) for call in again_calls if call.is_write] == []
    assert after_again == pristine
