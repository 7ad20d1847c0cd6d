"""Device identities under AWS throttling: success of a single run, wall time and calls, against a fault-free run.

For each throttling share (and the fault-free baseline, measured in the same run) and each fleet size, a fresh
local AWS endpoint state; iot_device_identity runs once per device, 5 at a time (Ansible's default forks), each as
Ansible's module process with the playbooks' AWS client settings (playbooks/vars/aws_client.yml), through the test
bed's fault proxy (testbed/fault_proxy.py: IoT's own ThrottlingException answers, seeded). A run succeeds
when every module succeeded and the endpoint holds exactly one thing, one policy and one ACTIVE certificate (for the
device's key, attached) per device, and nothing else.

Prints, per fleet size and share: runs succeeded, median wall time and its ratio to the fault-free median, median
IoT calls per device (requests the proxy saw, throttled ones included).

    python bench/throttled_identities.py [--devices 3 8] [--shares 0.1 0.3 0.5] [--repeat 3]

Only the identity step is measured (its calls are most of a device's IoT calls); site.yml's other AWS calls
(Greengrass, Lambda, S3, IAM) are not in this bench.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from testbed.aws_endpoint import LocalAwsEndpoint  # noqa: E402
from testbed.fault_proxy import FaultPlan, FaultProxy  # noqa: E402
from tests.integration.test_iot_device_identity_interrupted import make_csr, public_key  # noqa: E402
from tests.roles.playbook_json import playbook_aws_client_config, run_module_process  # noqa: E402

FORKS = 5


def run_module(args: dict, folder: Path) -> dict:
    return run_module_process("iot_device_identity", args, folder / f"{args['thing_name']}.json", timeout=None)


def endpoint_holds_exactly(iot, devices: dict) -> bool:
    things = sorted(t["thingName"] for t in iot.list_things()["things"])
    policies = sorted(p["policyName"] for p in iot.list_policies()["policies"])
    certificates = iot.list_certificates()["certificates"]
    if things != sorted(devices) or policies != sorted(f"{t}-policy" for t in devices):
        return False
    if len(certificates) != len(devices) or any(c["status"] != "ACTIVE" for c in certificates):
        return False
    for thing, (_, key) in devices.items():
        principals = iot.list_thing_principals(thingName=thing)["principals"]
        if len(principals) != 1:
            return False
        pem = iot.describe_certificate(certificateId=principals[0].rsplit("/", 1)[-1])["certificateDescription"]
        if public_key(pem["certificatePem"]) != key:
            return False
    return True


def one_run(endpoint: LocalAwsEndpoint, iot, count: int, share: float, seed: int, folder: Path) -> dict:
    endpoint.reset()
    devices = {f"bench-{n:02d}": make_csr(f"bench-{n:02d}") for n in range(1, count + 1)}
    plan = FaultPlan(throttle=share, services=("iot",), seed=seed)
    with FaultProxy(endpoint.url, plan) as proxy:
        base = dict(endpoint.module_options(), endpoint_url=proxy.url, aws_config=playbook_aws_client_config())
        started = time.monotonic()
        with ThreadPoolExecutor(FORKS) as pool:
            jobs = [dict(base, thing_name=thing, csr=csr) for thing, (csr, _) in devices.items()]
            results = list(pool.map(lambda args: run_module(args, folder), jobs))
        wall = time.monotonic() - started
    ok = all(not r.get("failed") for r in results) and endpoint_holds_exactly(iot, devices)
    calls = plan.forwarded + sum(1 for e in plan.log if e.fault != "lost")
    return {"ok": ok, "wall": wall, "calls_per_device": calls / count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[3, 8])
    parser.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalAwsEndpoint(log_path=Path(tmp) / "endpoint.log") as endpoint:
        iot = endpoint.client("iot")
        header = ("devices", 7), ("throttled", 9), ("succeeded", 9), ("wall s", 7), ("x fault-free", 12)
        print(" ".join(f"{name:>{width}}" for name, width in header), f"{'calls/device':>12}")
        for count in options.devices:
            baseline = None
            for share in [0.0, *options.shares]:
                runs = [one_run(endpoint, iot, count, share, seed, Path(tmp)) for seed in range(options.repeat)]
                wall = statistics.median(r["wall"] for r in runs)
                baseline = baseline or wall
                calls = statistics.median(r["calls_per_device"] for r in runs)
                succeeded = f"{sum(r['ok'] for r in runs)}/{len(runs)}"
                print(f"{count:>7} {share:>9.0%} {succeeded:>9} {wall:>7.1f} {wall / baseline:>12.2f} {calls:>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
