"""Greengrass through the test bed: deployment time to SUCCEEDED per fleet size, and MQTT request latency.

For each fleet size, simulated Debian 12 devices are provisioned as V2 core devices by playbooks/site.yml
against a fresh local AWS endpoint and its data plane; their stand-in nuclei follow the deployments through IoT
jobs and run the real detector (testbed/standins/greengrass_v2_nucleus, test equipment). Then:

- deployment: a new deployment to the thing group (the same components, the detector's configuration changed,
  so every device stops, installs - unpack and load-check the model - and starts the detector again), timed from
  CreateDeployment's answer until every device has reported SUCCEEDED; median over the rounds;
- requests (first device of the smallest fleet): a client publishes the seed's request on blog/infer/input and
  waits for the detections on blog/infer/output, one at a time; round trip p50/p95 next to the forward pass and
  the whole handler as the detector measured them inside the same requests (``timing_ms`` of each answer).

    python bench/greengrass_v2_through_the_bed.py [--devices 1,4] [--rounds 3] [--requests 50] [--generation v1|v2]

With ``--generation v1`` the devices are V1 cores (the stand-in V1 core, testbed/standins/greengrass_v1_core): a
deployment is a new deployment of each core's group version, timed until every core reported Success, and the
requests go through the group's subscriptions to the detector Lambda.

Needs root (simulated devices), like the tests. Prints one JSON object per measurement and a summary.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from testbed.edge_devices import EdgeDeviceBed, build_image  # noqa: E402
from tests.e2e.fleet import (  # noqa: E402
    SITE_PLAYBOOK,
    aws_clients,
    build_artefacts,
    host_vars_inventory,
    recording_endpoint,
    run_site,
)
from tests.e2e.greengrass_mqtt import Requester  # noqa: E402

THING_GROUP = "edgeml-demo-detectors"
DETECTOR = "com.edgeml.ObjectDetector"
IMAGE_DIR = "/var/lib/edgeml-bench"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def all_succeeded(gg2, hosts: list[str], deployment_id: str) -> bool:
    for host in hosts:
        deployments = gg2.list_effective_deployments(coreDeviceThingName=host)["effectiveDeployments"]
        mine = [d for d in deployments if d["deploymentId"] == deployment_id]
        if not mine or mine[0]["coreDeviceExecutionStatus"] != "SUCCEEDED":
            if mine and mine[0]["coreDeviceExecutionStatus"] in ("FAILED", "CANCELED", "REJECTED", "TIMED_OUT"):
                raise RuntimeError(f"{host}: deployment {deployment_id} {mine[0]}")
            return False
    return True


def redeploy(gg2, group_arn: str, current: dict, round_number: int) -> tuple[float, str]:
    """A new deployment of the same components, the detector's configuration changed: (start time, its id)."""
    components = json.loads(json.dumps(current["components"]))
    components[DETECTOR]["configurationUpdate"] = {"merge": json.dumps({"benchRound": round_number})}
    started = time.monotonic()
    deployment_id = gg2.create_deployment(
        targetArn=group_arn, deploymentName=f"bench-{round_number}", components=components
    )["deploymentId"]
    return started, deployment_id


def v1_groups(gg, hosts: list[str]) -> dict[str, dict]:
    """host -> {"GroupId", "GroupVersionId"}: each V1 core's group and its deployed version."""
    groups = {g["Name"]: g for g in gg.list_groups()["Groups"]}
    return {
        h: {"GroupId": groups[f"{h}-group"]["Id"], "GroupVersionId": groups[f"{h}-group"]["LatestVersion"]}
        for h in hosts
    }


def v1_all_succeeded(gg, started: dict[str, tuple[str, str]]) -> bool:
    for host, (group_id, deployment_id) in started.items():
        status = gg.get_deployment_status(GroupId=group_id, DeploymentId=deployment_id)
        if status["DeploymentStatus"] == "Failure":
            raise RuntimeError(f"{host}: deployment {deployment_id} {status}")
        if status["DeploymentStatus"] != "Success":
            return False
    return True


def measure_fleet(count: int, rounds: int, requests: int, workdir: Path, generation: str = "v2") -> dict:
    hosts = [f"edge-{index:02d}" for index in range(1, count + 1)]
    with recording_endpoint(workdir / "aws") as (endpoint, _log):
        client = aws_clients(endpoint)
        bed = EdgeDeviceBed(f"bench-gg2-{os.getpid()}-{count}", count=count, tied_to_process=True)
        bed.up()
        try:
            bed.write_endpoints(endpoint.device_endpoints())
            artefacts = build_artefacts(workdir / "artefacts")
            extra = workdir / "artefacts.json"
            extra.write_text(json.dumps(artefacts))
            host_vars = {
                host: {
                    "edgeml_greengrass_generation": generation,
                    f"greengrass_{generation}_detector_deployment_wait": True,
                }
                for host in hosts
            }
            inventory = host_vars_inventory(workdir / f"{generation}.yml", host_vars)
            environment = dict(os.environ, **endpoint.environment())
            # The generation as an extra var too: local_testbed's host_vars (above inventory vars) make edge-03 V2.
            provisioned = run_site(
                SITE_PLAYBOOK,
                [bed.inventory, inventory],
                extra,
                environment,
                extra_vars={"edgeml_greengrass_generation": generation},
                timeout=3600,
            )
            if provisioned.run.returncode != 0:
                raise RuntimeError(provisioned.describe())
            print(json.dumps({"devices": count, "site_yml_seconds": round(provisioned.seconds, 1)}), flush=True)
            if generation == "v1":
                seconds = measure_v1_deployments(client("greengrass"), hosts, rounds)
                result = {"generation": "v1", "devices": count}
                result["deployment_to_success_median_s"] = round(statistics.median(seconds), 2)
            else:
                seconds = measure_v2_deployments(client, hosts, rounds)
                result = {"devices": count, "deployment_to_succeeded_median_s": round(statistics.median(seconds), 2)}
            if requests:
                result.update(measure_requests(bed, hosts[0], endpoint, client, artefacts, requests, workdir))
            return result
        finally:
            bed.down()


def measure_v2_deployments(client, hosts: list[str], rounds: int) -> list[float]:
    """A new deployment to the thing group (same components, the detector's configuration changed), timed until
    every device has reported SUCCEEDED."""
    gg2 = client("greengrassv2")
    group_arn = client("iot").describe_thing_group(thingGroupName=THING_GROUP)["thingGroupArn"]
    current = gg2.list_deployments(targetArn=group_arn, historyFilter="LATEST_ONLY")["deployments"][0]
    current = gg2.get_deployment(deploymentId=current["deploymentId"])
    seconds = []
    for round_number in range(1, rounds + 1):
        started, deployment_id = redeploy(gg2, group_arn, current, round_number)
        deadline = started + 600
        while not all_succeeded(gg2, hosts, deployment_id):
            if time.monotonic() > deadline:
                raise RuntimeError(f"deployment {deployment_id} not SUCCEEDED on every device in 600 s")
            time.sleep(0.25)
        seconds.append(time.monotonic() - started)
        print(json.dumps({"devices": len(hosts), "round": round_number, "seconds": round(seconds[-1], 2)}))
    return seconds


def measure_v1_deployments(gg, hosts: list[str], rounds: int) -> list[float]:
    """A new deployment of each V1 core's group version (every core fetches the group and the Lambda package again,
    unpacks the model and restarts the detector Lambda), timed until every core has reported Success."""
    seconds = []
    groups = v1_groups(gg, hosts)
    for round_number in range(1, rounds + 1):
        began = time.monotonic()
        started = {
            host: (group["GroupId"], gg.create_deployment(DeploymentType="NewDeployment", **group)["DeploymentId"])
            for host, group in groups.items()
        }
        while not v1_all_succeeded(gg, started):
            if time.monotonic() > began + 600:
                raise RuntimeError("V1 deployments not Success on every core in 600 s")
            time.sleep(0.25)
        seconds.append(time.monotonic() - began)
        print(
            json.dumps(
                {"generation": "v1", "devices": len(hosts), "round": round_number, "seconds": round(seconds[-1], 2)}
            )
        )
    return seconds


def measure_requests(bed, host: str, endpoint, client, artefacts: dict, count: int, workdir: Path) -> dict:
    image = base64.b64encode(Path(artefacts["smoke_test_image"]).read_bytes()).decode()
    copied = bed.run(
        host,
        f"sudo mkdir -p {IMAGE_DIR} && echo {image} | base64 -d | sudo tee {IMAGE_DIR}/sample.png >/dev/null && "
        f"sudo chmod 0755 {IMAGE_DIR} && sudo chmod 0644 {IMAGE_DIR}/sample.png",
    )
    if copied.returncode != 0:
        raise RuntimeError(copied.stderr)
    requester = Requester(
        endpoint, client, workdir / "requester", "bench-requester", "blog/infer/input", "blog/infer/output"
    )
    try:
        request = {"image_path": f"{IMAGE_DIR}/sample.png"}
        if requester.ask(request, timeout=180) is None:  # warm-up: the detector subscribed and answers
            raise RuntimeError("the detector does not answer")
        round_trips, forward, handler = [], [], []
        for _ in range(count):
            answer = requester.ask(request, timeout=60, resend_every=60)
            if answer is None or answer.requests != 1:
                raise RuntimeError("a request was not answered within 60 s")
            round_trips.append(answer.seconds * 1000)
            forward.append(answer.payload["timing_ms"]["forward_ms"])
            handler.append(answer.payload["timing_ms"]["total_ms"])
    finally:
        requester.close()
    p50 = statistics.median(round_trips)
    return {
        "requests": count,
        "round_trip_ms_p50": round(p50, 1),
        "round_trip_ms_p95": round(percentile(round_trips, 0.95), 1),
        "forward_ms_p50": round(statistics.median(forward), 1),
        "forward_ms_p95": round(percentile(forward, 0.95), 1),
        "handler_ms_p50": round(statistics.median(handler), 1),
        "round_trip_over_forward_p50": round(p50 / statistics.median(forward), 2),
        "greengrass_and_mqtt_overhead_ms_p50": round(p50 - statistics.median(handler), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,4", help="fleet sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--generation", choices=("v1", "v2"), default="v2", help="the devices' Greengrass generation")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("simulated edge devices need root", file=sys.stderr)
        return 2
    build_image()
    sizes = [int(size) for size in args.devices.split(",")]
    results = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-gg2-{size}-") as folder:
            requests = args.requests if size == min(sizes) else 0
            results.append(measure_fleet(size, args.rounds, requests, Path(folder), args.generation))
            print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"summary": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
