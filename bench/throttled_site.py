"""site.yml under AWS throttling: one run per fleet size and throttling rate, next to a fault-free run.

For each fleet size and each rate: a fresh local AWS endpoint and a fresh bed of simulated devices (the demo
inventory's generations: edge-03 is V2, every other device V1), and the fault proxy between
the controller and the endpoint (testbed/fault_proxy.py: each service's own throttling error for the given
share of requests, plus ``--errors`` of internal errors, seeded). site.yml runs once, exactly as scripts/demo.sh
runs it, with the playbooks' own client settings. Measured per run:

- whether the single run converged (rc 0, no failed or unreachable host);
- wall time, and its ratio to the fault-free run of the same size (rate 0 is always run first);
- AWS requests per device (answered by the endpoint or by the proxy's injected error);
- whether what the endpoint holds afterwards has the same counts as after the fault-free run (things, ACTIVE
  certificates, policies, V1 groups and their versions and definitions, Lambda versions, component versions,
  deployments, S3 objects): nothing duplicated, nothing missing.

The device image, wheelhouse and demo artefacts are built and cached before any timing. One sample per cell: a
fleet run is minutes long.

    python bench/throttled_site.py [--devices 3,8] [--throttle 0.1,0.3,0.5] [--errors 0.05] [--seed 14] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from testbed.aws_endpoint import LocalAwsEndpoint  # noqa: E402
from testbed.edge_devices import EdgeDeviceBed  # noqa: E402
from testbed.fault_proxy import FaultPlan, FaultProxy  # noqa: E402
from tests.e2e.fleet import (  # noqa: E402
    SITE_PLAYBOOK,
    aws_clients,
    aws_inventory,
    bench_workdir,
    load_average,
    resource_counts,
    run_site,
    site_extra_vars_file,
)


def one_run(size: int, rate: float, errors: float, seed: int, extra_vars_file: Path, workdir: Path, timeout: float):
    row: dict = {"devices": size, "throttle": rate, "errors": errors if rate else 0.0, "load_start": load_average()}
    workdir.mkdir(parents=True, exist_ok=True)
    with LocalAwsEndpoint(log_path=workdir / "aws_endpoint.log") as endpoint:
        bed = EdgeDeviceBed(f"bench-throttle-{os.getpid()}-{size}", count=size, tied_to_process=True).up()
        try:
            bed.write_endpoints(endpoint.device_endpoints())
            plan = FaultPlan(throttle=rate, error=row["errors"], seed=seed)
            with FaultProxy(endpoint.url, plan) as proxy:
                env = {**os.environ, **endpoint.environment(), "AWS_ENDPOINT_URL": proxy.url}
                run = run_site(SITE_PLAYBOOK, [bed.inventory], extra_vars_file, env, timeout=timeout)
            (workdir / "run.json").write_text(run.output_text())
            row["seconds"] = run.seconds
            row["failed_hosts"] = sorted(h for h, s in run.recap.items() if s["failures"] or s["unreachable"])
            row["converged"] = run.run.returncode == 0 and not row["failed_hosts"]
            if not row["converged"]:
                print(f"    did not converge:\n{run.describe()[-3000:]}", flush=True)
            row["injected"] = plan.counts()
            row["requests_per_device"] = (plan.forwarded + sum(row["injected"].values())) / size
            row["counts"] = resource_counts(aws_inventory(aws_clients(endpoint)))
        finally:
            bed.down()
    row["load_end"] = load_average()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="3", help="comma-separated fleet sizes (default 3)")
    parser.add_argument("--throttle", default="0.1,0.3,0.5", help="comma-separated throttled shares (0 is added)")
    parser.add_argument("--errors", type=float, default=0.05, help="share of internal errors besides (default 0.05)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one site.yml run may take")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (each run's JSON output)")
    args = parser.parse_args()
    try:
        sizes = [int(value) for value in args.devices.split(",")]
        rates = sorted({0.0, *(float(value) for value in args.throttle.split(","))})
    except ValueError:
        parser.error("--devices and --throttle take comma-separated numbers, e.g. --devices 3,8 --throttle 0.3")
    if min(sizes) < 1 or not all(0 <= rate < 1 for rate in rates) or not 0 <= args.errors < 1:
        parser.error("sizes must be at least 1, and --throttle/--errors shares in [0, 1)")
    with bench_workdir("throttled_site", args.keep) as workdir:
        extra_vars_file = site_extra_vars_file(workdir)
        rows = []
        for size in sizes:
            for rate in rates:
                print(f"  {size} device(s), {rate:.0%} throttled (load average {load_average()})...", flush=True)
                started = time.monotonic()
                row = one_run(
                    size, rate, args.errors, args.seed, extra_vars_file, workdir / f"{size}-{rate}", args.timeout
                )
                row["bench_s"] = time.monotonic() - started
                rows.append(row)
                print(f"  {json.dumps(row)}", flush=True)

    print()
    print(
        f"{'devices':>7} {'throttled':>9} {'errors':>6} {'converged':>9} {'wall s':>7} {'x fault-free':>12} "
        f"{'requests/device':>15} {'counts = fault-free':>19}  injected"
    )
    for row in rows:
        clean = next(r for r in rows if r["devices"] == row["devices"] and r["throttle"] == 0)
        same = row["counts"] == clean["counts"]
        differing = {k: (v, clean["counts"][k]) for k, v in row["counts"].items() if v != clean["counts"][k]}
        print(
            f"{row['devices']:>7} {row['throttle']:>9.0%} {row['errors']:>6.0%} {str(row['converged']):>9} "
            f"{row['seconds']:>7.1f} {row['seconds'] / clean['seconds']:>12.2f} {row['requests_per_device']:>15.1f} "
            f"{str(same) if same else str(differing):>19}  {row['injected']}"
        )
    return 0 if all(row["converged"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
