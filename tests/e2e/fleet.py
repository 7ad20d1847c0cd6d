"""Helpers for running site.yml on a simulated fleet against the local AWS endpoint.

Used by tests/e2e/test_site_fleet.py and bench/provision_fleet.py:

- ``build_artefacts``: the demo's test-bed artefacts (stand-in core archive, small model, wheelhouse,
  sample image) as extra vars, exactly as ``scripts/demo.sh`` makes them;
- ``run_site``: ansible-playbook on the local_testbed inventory plus the bed's, with the JSON callback
  (tests/roles/playbook_json.py), timed; its ``stats`` are the PLAY RECAP;
- ``recording_endpoint`` / ``AwsRequestLog``: a local AWS endpoint whose every request is recorded
  by moto's request recorder (method, path, headers, body), so API calls are counted and classified
  (read or write) from what the endpoint received, with nothing in the modules instrumented;
- ``aws_inventory``: what the endpoint holds for the fleet (things, certificates, groups, Lambda...).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.loaders
import numpy as np
import yaml

from testbed.aws_endpoint import LocalAwsEndpoint
from testbed.edge_devices import SUITE, EdgeDeviceBed, build_image
from tests.demo_artefacts import SAMPLE_BOXES
from tests.inference.small_ssd import CLASS_LABELS, cell_box, class_probabilities
from tests.roles.playbook_json import PlaybookRun, playbook_invocation, run_playbook

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE_PLAYBOOK = REPO_ROOT / "playbooks" / "site.yml"
DECOMMISSION_PLAYBOOK = REPO_ROOT / "playbooks" / "decommission.yml"
SMOKE_TEST_PLAYBOOK = REPO_ROOT / "playbooks" / "smoke_test.yml"
LOCAL_TESTBED_INVENTORY = REPO_ROOT / "inventories" / "local_testbed"
# Operations that only read, by name (AWS's naming convention holds for every service used here).
READ_PREFIXES = ("Get", "List", "Describe", "Head")


# --------------------------------------------------------------------------- a module's files


@contextlib.contextmanager
def kept_on_failure(request, prefix: str) -> Iterator[Path]:
    """A module's controller-side folder; kept (and named in the output) when one of its tests failed.

    Not pytest's tmp_path: pytest deletes all but its three newest base temp dirs whenever a session
    starts, and on a machine where several pytest sessions run at once that includes a running one's.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    failed_before = request.session.testsfailed
    yield path
    if request.session.testsfailed > failed_before:
        print(f"\ntests/e2e: runs' output, the endpoint's request record and log kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def device_bed(
    name: str,
    count: int,
    endpoint: LocalAwsEndpoint | None = None,
    suite: str | None = None,
    names: list[str] | None = None,
) -> Iterator:
    """`count` simulated devices for a test module (skipped without root), torn down after it; tied to this
    process, so that the next `up` anywhere reaps them if pytest is killed. With `endpoint`, the devices' Greengrass
    V2 nucleus is told where the bed's endpoint is (it then follows its deployments, as the demo's devices do).
    ``suite``: the devices' Debian release (the bed's default, Debian 12, or "trixie"); ``names``: their hostnames."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("simulated edge devices need root (overlay mounts, systemd-nspawn)")

    build_image(suite=suite or SUITE)  # a no-op when the image is cached
    bed = EdgeDeviceBed(
        f"pytest-{os.getpid()}-{name}", count=count, tied_to_process=True, suite=suite or SUITE, names=names
    )
    bed.up()
    try:
        if endpoint is not None:
            bed.write_endpoints(endpoint.device_endpoints())
        yield bed
    finally:
        bed.down()


# --------------------------------------------------------------------------- artefacts and runs


@contextlib.contextmanager
def bench_workdir(name: str, keep: bool = False) -> Iterator[Path]:
    """A site.yml bench's work dir, removed afterwards unless ``keep``. Exits unless root (simulated devices need it);
    SIGTERM unwinds like Ctrl-C, so a killed bench still stops its endpoints and devices."""
    if os.geteuid() != 0:
        sys.exit(f"{name}: simulated devices need root (overlay mounts, systemd-nspawn)")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name.replace('_', '-')}-"))
    os.environ["ANSIBLE_LOCAL_TEMP"] = str(workdir / "ansible-local-tmp")
    try:
        yield workdir
    finally:
        if keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def site_extra_vars_file(workdir: Path) -> Path:
    """For a bench's site.yml runs: the device image and the demo's artefacts built (cached) before any timing, with
    this run's Lambda package apart from the demo's cached one, written as ``workdir/artefacts.json``."""
    build_image()
    artefacts = build_artefacts(workdir / "artefacts")
    artefacts["greengrass_v1_detector_package_path"] = str(workdir / "package" / "edgeml-object-detector.zip")
    path = workdir / "artefacts.json"
    path.write_text(json.dumps(artefacts, indent=2) + "\n")
    return path


def build_artefacts(out: Path, timeout: float = 900) -> dict:
    """The extra vars `python -m tests.demo_artefacts --out OUT` prints (cached parts are reused)."""
    built = subprocess.run(
        [sys.executable, "-m", "tests.demo_artefacts", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if built.returncode != 0:
        raise RuntimeError(f"tests.demo_artefacts failed (rc={built.returncode}):\n{built.stderr[-3000:]}")
    return json.loads(built.stdout)


@dataclass
class TimedRun:
    run: PlaybookRun
    seconds: float

    @property
    def recap(self) -> dict[str, dict]:
        """{host: {ok, changed, failures, unreachable, skipped, ...}}: the PLAY RECAP."""
        return self.run.output.get("stats", {})

    def host_failures(self, host: str) -> list[str]:
        """'task: message' of each failed result on host."""
        found = []
        for play in self.run.output.get("plays", []):
            for task in play.get("tasks", []):
                result = task["hosts"].get(host)
                if result and (result.get("failed") or result.get("unreachable")):
                    found.append(f"{task['task']['name']}: {result.get('msg', '')}")
        return found

    def changed_tasks(self) -> dict[str, list[str]]:
        """{host: [names of tasks that reported changed]}, for saying what a re-run changed."""
        found: dict[str, list[str]] = {}
        for play in self.run.output.get("plays", []):
            for task in play.get("tasks", []):
                for host, result in task["hosts"].items():
                    if result.get("changed"):
                        found.setdefault(host, []).append(task["task"]["name"])
        return found

    def output_text(self) -> str:
        """Everything the run printed (the JSON callback's document holds every task result)."""
        return json.dumps(self.run.output) + "\n" + self.run.stderr

    def describe(self) -> str:
        failures = {host: self.host_failures(host) for host in self.recap}
        return f"{self.run.describe()}\nrecap={self.recap}\nfailures by host={failures}"


def run_site(
    playbook: Path,
    inventories: list[Path],
    extra_vars_file: Path,
    env: dict[str, str],
    extra_vars: dict | None = None,
    timeout: float = 1800,
    options: tuple[str, ...] = (),
) -> TimedRun:
    """ansible-playbook PLAYBOOK -i local_testbed -i INVENTORY... -e @EXTRA_VARS_FILE [OPTIONS], timed (wall clock)."""
    more_inventories = [arg for inventory in inventories for arg in ("-i", str(inventory))]
    started = time.monotonic()
    run = run_playbook(
        playbook,
        LOCAL_TESTBED_INVENTORY,
        *more_inventories,
        "-e",
        f"@{extra_vars_file}",
        *options,
        extra_vars=extra_vars,
        env=env,
        timeout=timeout,
    )
    return TimedRun(run, time.monotonic() - started)


@dataclass
class RunnerRun:
    """A run through ansible-runner, read as AWX reads it: the event stream and the final stats."""

    rc: int
    status: str
    events: list[dict]
    stdout: str
    seconds: float

    def of(self, kind: str) -> list[dict]:
        return [event for event in self.events if event.get("event") == kind]

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """{count: {host: n}} of the last playbook_on_stats event (ok, changed, failures, dark, skipped...)."""
        [last] = self.of("playbook_on_stats")[-1:] or [{}]
        return last.get("event_data", {})

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """{host: {ok, changed, failures, dark, ...}}, the PLAY RECAP the stats event carries."""
        counts = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")
        hosts = {host for count in counts for host in self.stats.get(count) or {}}
        return {host: {count: (self.stats.get(count) or {}).get(host, 0) for count in counts} for host in hosts}

    def output_text(self) -> str:
        """Everything the run printed and every event it sent (results included)."""
        return self.stdout + "\n" + json.dumps(self.events, default=str)

    def changed_tasks(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for event in self.of("runner_on_ok"):
            data = event["event_data"]
            if data.get("res", {}).get("changed"):
                found.setdefault(data["host"], []).append(data["task"])
        return found

    def describe(self) -> str:
        failed = [
            f"{e['event_data'].get('host')}: {e['event_data'].get('task')}: {e['event_data'].get('res', {}).get('msg')}"
            for e in self.of("runner_on_failed") + self.of("runner_on_unreachable")
            if not e["event_data"].get("ignore_errors")
        ]
        return f"rc={self.rc} status={self.status}\nfailed={failed}\n{self.stdout[-3000:]}"


def run_site_with_runner(
    playbook: Path,
    inventories: list[Path],
    extra_vars_file: Path,
    env: dict[str, str],
    private_data_dir: Path,
    bin_dir: Path | None = None,
) -> RunnerRun:
    """site.yml through ansible_runner.run() on a copy of the repository's runner/ private data directory (its
    env/settings and env/envvars), with the repository as the project, as runner/README.md documents.

    ``bin_dir``: where the ansible-playbook to run is (an execution environment's); this interpreter's by default."""
    import ansible_runner

    shutil.copytree(REPO_ROOT / "runner", private_data_dir)
    events: list[dict] = []
    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(private_data_dir),
        project_dir=str(REPO_ROOT),
        playbook=str(playbook.relative_to(REPO_ROOT)),
        inventory=[str(LOCAL_TESTBED_INVENTORY), *map(str, inventories)],
        cmdline=f"-e @{extra_vars_file}",
        # ansible-runner starts the ansible-playbook it finds first on PATH.
        envvars=dict(
            {k: v for k, v in env.items() if k != "ANSIBLE_CONFIG"},
            PATH=os.pathsep.join([str(bin_dir or Path(sys.executable).parent), env.get("PATH", os.defpath)]),
        ),
        event_handler=lambda event: events.append(event) or True,
        quiet=True,
    )
    stdout = runner.stdout.read() if runner.stdout else ""
    return RunnerRun(runner.rc, runner.status, events, stdout, time.monotonic() - started)


def start_site(playbook: Path, inventories: list[Path], extra_vars_file: Path, env: dict[str, str], log: Path):
    """run_site's ansible-playbook started in the background (output to ``log``), for a test that kills it."""
    more_inventories = [arg for inventory in inventories for arg in ("-i", str(inventory))]
    argv, environment = playbook_invocation(
        playbook, LOCAL_TESTBED_INVENTORY, *more_inventories, "-e", f"@{extra_vars_file}", env=env
    )
    with log.open("w") as out:
        return subprocess.Popen(argv, env=environment, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)


def host_vars_inventory(path: Path, host_vars: dict[str, dict]) -> Path:
    """An extra inventory that sets variables on some edge_devices hosts (JSON is valid YAML)."""
    document = {"all": {"children": {"edge_devices": {"hosts": host_vars}}}}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------- AWS requests


@dataclass(frozen=True)
class AwsCall:
    service: str
    operation: str
    method: str
    path: str

    @property
    def is_write(self) -> bool:
        # S3 (REST on bucket/key paths) and anything no model maps: the HTTP verb says it.
        if self.service == "s3" or self.operation.startswith("unmapped"):
            return self.method not in ("GET", "HEAD")
        return not self.operation.startswith(READ_PREFIXES)

    def __str__(self) -> str:
        return f"{self.service}:{self.operation} ({self.method} {self.path})"


@dataclass
class RestOperations:
    """Maps (service, method, path) of a REST-protocol request to its operation via botocore's models."""

    tables: dict[str, list] = field(default_factory=dict)

    def table(self, service: str) -> list:
        if service not in self.tables:
            model = botocore.loaders.Loader().load_service_model(service, "service-2")
            rows = []
            for name, operation in model["operations"].items():
                http = operation.get("http", {})
                uri = http.get("requestUri", "/").split("?", 1)[0]
                pattern = ""
                for piece in re.split(r"(\{[^}]+\})", uri):
                    if piece.startswith("{"):
                        pattern += ".+" if piece.endswith("+}") else "[^/]+"
                    else:
                        pattern += re.escape(piece)
                literal = len(re.sub(r"\{[^}]+\}", "", uri))
                rows.append((http.get("method", "POST"), re.compile(f"^{pattern}/?$"), literal, name))
            self.tables[service] = rows
        return self.tables[service]

    def operation(self, service: str, method: str, path: str) -> str:
        table = self.table(service)
        matches = [(literal, name) for m, regex, literal, name in table if m == method and regex.match(path)]
        return max(matches)[1] if matches else f"unmapped {method} {path}"


CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/(?P<service>[^/]+)/aws4_request")


def classify(entry: dict, rest: RestOperations) -> AwsCall | None:
    """The API call of one recorded request; None for the test bed's own /moto-api control calls."""
    url = urllib.parse.urlsplit(entry["url"])
    path, method = url.path, entry["method"]
    if path.startswith("/moto-api/"):
        return None
    headers = {key.lower(): value for key, value in entry.get("headers", {}).items()}
    scope = CREDENTIAL_SCOPE.search(headers.get("authorization", ""))
    service = scope["service"] if scope else "unsigned"
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", errors="replace")
    if "x-amz-target" in headers:  # JSON protocol
        return AwsCall(service, headers["x-amz-target"].rsplit(".", 1)[-1], method, path)
    if method == "POST" and path == "/":  # query protocol (IAM, STS): the action is in the form body
        action = urllib.parse.parse_qs(body).get("Action", ["unknown"])[0]
        return AwsCall(service, action, method, path)
    if service == "s3":
        return AwsCall(service, f"{method} object/bucket", method, path)
    if service == "greengrass" and path.startswith("/greengrass/v2/"):  # V1 and V2 share the signing name
        service = "greengrassv2"
    return AwsCall(service, rest.operation(service, method, path), method, path)


class AwsRequestLog:
    """Every request the endpoint received, from moto's recorder file (one JSON document a line)."""

    def __init__(self, path: Path):
        self.path = path
        self.rest = RestOperations()

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def mark(self) -> int:
        """A position in the log: calls(since=mark) are the requests after it."""
        return len(self.entries())

    def calls(self, since: int = 0) -> list[AwsCall]:
        classified = (classify(entry, self.rest) for entry in self.entries()[since:])
        return [call for call in classified if call is not None]

    def writes(self, since: int = 0) -> list[AwsCall]:
        return [call for call in self.calls(since) if call.is_write]

    def bodies(self) -> Iterator[str]:
        """Each request's URL, headers and body as text (for checking what reached AWS)."""
        for entry in self.entries():
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode("utf-8", errors="replace")
            yield f"{entry['url']}\n{json.dumps(entry.get('headers', {}))}\n{body}"


@contextlib.contextmanager
def recording_endpoint(workdir: Path) -> Iterator[tuple[LocalAwsEndpoint, AwsRequestLog]]:
    """A fresh local AWS endpoint that records every request it gets into workdir/aws_requests.jsonl.

    moto's recorder reads its settings from the server's environment when it starts, so they are set
    for the child process only (and the file is never the default ./moto_recording in the repo).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    recording = workdir / "aws_requests.jsonl"
    settings = {"MOTO_RECORDER_FILEPATH": str(recording), "MOTO_ENABLE_RECORDING": "1", "PYTHONUNBUFFERED": "1"}
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        endpoint = LocalAwsEndpoint(log_path=workdir / "aws_endpoint.log").start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        yield endpoint, AwsRequestLog(recording)
    finally:
        endpoint.stop()


# --------------------------------------------------------------------------- what the detector should see


def expected_detections() -> dict[str, tuple[float, float, float, float]]:
    """{label: (xmin, ymin, xmax, ymax)} of the sample's boxes, as tests/demo_artefacts.py drew them."""
    expected = {}
    for (row, column), rgb in SAMPLE_BOXES.items():
        label = CLASS_LABELS[int(np.argmax(class_probabilities(rgb))) - 1]
        expected[label] = cell_box(row, column)
    return expected


# --------------------------------------------------------------------------- what AWS holds


def aws_clients(endpoint: LocalAwsEndpoint):
    env = endpoint.environment()
    session = boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )
    return lambda service: session.client(service, endpoint_url=endpoint.url)


def resource_counts(inventory: dict) -> dict[str, int]:
    """How many of each resource site.yml makes the endpoint holds (aws_inventory's record, counted)."""
    return {
        "things": len(inventory["things"]),
        "active_certificates": sum(status == "ACTIVE" for status in inventory["certificates"].values()),
        "certificates": len(inventory["certificates"]),
        "policies": len(inventory["policies"]),
        "v1_groups": len(inventory["groups"]),
        "v1_group_versions": sum(group["versions"] for group in inventory["groups"].values()),
        "v1_deployments": sum(len(group["deployments"]) for group in inventory["groups"].values()),
        **{f"v1_{kind}_definitions": count for kind, count in inventory["definitions"].items()},
        "lambda_versions": sum(len(f["published_versions"]) for f in inventory["functions"].values()),
        "component_versions": sum(len(versions) for versions in inventory["components"].values()),
        "v2_deployments": len(inventory["v2_deployments"]),
        "s3_objects": len(inventory["objects"]),
    }


def aws_inventory(client) -> dict:
    """What the endpoint holds that site.yml makes, in comparable form (ids, versions, statuses)."""
    iot, greengrass, lambda_, s3 = client("iot"), client("greengrass"), client("lambda"), client("s3")
    greengrassv2 = client("greengrassv2")
    things, thing_groups = {}, {}
    for thing in iot.list_things()["things"]:
        name = thing["thingName"]
        things[name] = sorted(iot.list_thing_principals(thingName=name)["principals"])
        thing_groups[name] = sorted(
            g["groupName"] for g in iot.list_thing_groups_for_thing(thingName=name)["thingGroups"]
        )
    certificates = {cert["certificateArn"]: cert["status"] for cert in iot.list_certificates()["certificates"]}
    groups = {}
    for group in greengrass.list_groups()["Groups"]:
        versions = greengrass.list_group_versions(GroupId=group["Id"])["Versions"]
        deployments = greengrass.list_deployments(GroupId=group["Id"])["Deployments"]
        groups[group["Name"]] = {
            "id": group["Id"],
            "latest_version": group.get("LatestVersion"),
            "versions": len(versions),
            "deployments": sorted(d["DeploymentId"] for d in deployments),
        }
    definitions = {
        kind: len(getattr(greengrass, f"list_{kind}_definitions")()["Definitions"])
        for kind in ("core", "function", "resource", "subscription")
    }
    functions = {}
    for function in lambda_.list_functions()["Functions"]:
        name = function["FunctionName"]
        versions = lambda_.list_versions_by_function(FunctionName=name)["Versions"]
        aliases = lambda_.list_aliases(FunctionName=name)["Aliases"]
        functions[name] = {
            "published_versions": sorted(v["Version"] for v in versions if v["Version"] != "$LATEST"),
            "code_sha256": function["CodeSha256"],
            "aliases": {alias["Name"]: alias["FunctionVersion"] for alias in aliases},
        }
    components = {}
    for component in greengrassv2.list_components()["components"]:
        versions = greengrassv2.list_component_versions(arn=component["arn"])["componentVersions"]
        components[component["componentName"]] = sorted(v["componentVersion"] for v in versions)
    v2_deployments = sorted(
        (d["targetArn"].rsplit("/", 1)[-1], d["deploymentId"], d["deploymentStatus"])
        for d in greengrassv2.list_deployments(historyFilter="ALL")["deployments"]
    )
    objects = {}
    for bucket in s3.list_buckets()["Buckets"]:
        for obj in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            objects[f"{bucket['Name']}/{obj['Key']}"] = obj["ETag"]
    return {
        "core_devices": sorted(d["coreDeviceThingName"] for d in greengrassv2.list_core_devices()["coreDevices"]),
        "role_aliases": sorted(iot.list_role_aliases()["roleAliases"]),
        "iam_roles": sorted(role["RoleName"] for role in client("iam").list_roles()["Roles"]),
        "buckets": sorted(bucket["Name"] for bucket in s3.list_buckets()["Buckets"]),
        "thing_group_names": sorted(group["groupName"] for group in iot.list_thing_groups()["thingGroups"]),
        "things": things,
        "thing_groups": thing_groups,
        "certificates": certificates,
        "policies": sorted(policy["policyName"] for policy in iot.list_policies()["policies"]),
        "groups": groups,
        "definitions": definitions,
        "functions": functions,
        "components": components,
        "v2_deployments": v2_deployments,
        "objects": objects,
    }


def inventory_generation(host: str, inventory: Path = LOCAL_TESTBED_INVENTORY) -> str:
    """The host's edgeml_greengrass_generation in an inventory dir (host_vars over group_vars/all; site.yml: v2)."""
    generation = "v2"
    layers = [
        sorted((inventory / "group_vars").glob("all.y*ml")) + sorted((inventory / "group_vars" / "all").glob("*.y*ml")),
        sorted((inventory / "host_vars").glob(f"{host}.y*ml"))
        + sorted((inventory / "host_vars" / host).glob("*.y*ml")),
    ]
    for paths in layers:
        for path in paths:
            generation = (yaml.safe_load(path.read_text()) or {}).get("edgeml_greengrass_generation", generation)
    return generation


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
