"""site.yml killed with SIGKILL at seeded points of a first run, then re-run: what is left over, per resource type.

Issue 14's soak for "a run killed with SIGKILL at any point and re-run leaves exactly the resources of a clean run".
The suite kills runs at three chosen points (a certificate before its activation, the V1 group module before its
CreateGroup, site.yml between a component version and its deployment); this bench picks the points at random.

For the fleet (the demo inventory's generations: edge-01 and edge-02 on V1, edge-03 on V2):
1. a clean run on a fresh local AWS endpoint and fresh simulated devices, through the fault proxy (which only
   counts here): the resource counts a clean run leaves, and how many write requests (POST, PUT, DELETE, PATCH)
   the controller sends to AWS in it;
2. for each kill point K (``--points`` of them drawn with ``--seed`` from 1..that count): a fresh endpoint and fresh
   devices; site.yml through the fault proxy, which holds the K-th write request; the moment it is held the whole
   process tree of ansible-playbook (workers and module processes included) is frozen and SIGKILLed
   (tests/roles/playbook_json.kill_process_tree), so writes 1..K-1 happened and nothing of the run cleans up; then
   site.yml again, straight to the endpoint, and the resource counts compared with the clean run's.

Query-protocol services (IAM, STS) send reads as POST too, so some kill points fall before a read; each point is
still a distinct place between two of the run's requests. Runs are minutes long: one sample per point.

    python bench/killed_site.py [--devices 3] [--points 4] [--seed 14] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from testbed.aws_endpoint import LocalAwsEndpoint  # noqa: E402
from testbed.edge_devices import EdgeDeviceBed  # noqa: E402
from testbed.fault_proxy import FaultPlan, FaultProxy, FaultRule  # noqa: E402
from tests.e2e.fleet import (  # noqa: E402
    SITE_PLAYBOOK,
    aws_clients,
    aws_inventory,
    bench_workdir,
    resource_counts,
    run_site,
    site_extra_vars_file,
    start_site,
)
from tests.roles.playbook_json import kill_process_tree  # noqa: E402

WRITES = "POST|PUT|DELETE|PATCH"


def fleet_run(size: int, extra_vars_file: Path, workdir: Path, kill_at: int | None, timeout: float) -> dict:
    """One fresh fleet: a clean run (kill_at None) or a run killed at write ``kill_at`` and its re-run."""
    workdir.mkdir(parents=True, exist_ok=True)
    row: dict = {"kill_at": kill_at}
    with LocalAwsEndpoint(log_path=workdir / "aws_endpoint.log") as endpoint:
        bed = EdgeDeviceBed(f"bench-killed-{os.getpid()}", count=size, tied_to_process=True).up()
        try:
            bed.write_endpoints(endpoint.device_endpoints())
            env = {**os.environ, **endpoint.environment()}
            writes = FaultRule("hold", WRITES, ".", after=kill_at - 1 if kill_at else 10**9)
            plan = FaultPlan(rules=[writes])
            with FaultProxy(endpoint.url, plan) as proxy:
                through_proxy = {**env, "AWS_ENDPOINT_URL": proxy.url}
                if kill_at is None:
                    run = run_site(SITE_PLAYBOOK, [bed.inventory], extra_vars_file, through_proxy, timeout=timeout)
                    row.update(seconds=run.seconds, rc=run.run.returncode, writes=writes.matched)
                else:
                    started = time.monotonic()
                    process = start_site(
                        SITE_PLAYBOOK, [bed.inventory], extra_vars_file, through_proxy, workdir / "killed.log"
                    )
                    held = None
                    try:
                        # The run may send fewer writes than the clean one did (retries vary): then it ends unheld.
                        while held is None and process.poll() is None and time.monotonic() - started < timeout:
                            try:
                                held = proxy.wait_for("hold", timeout=2)
                            except TimeoutError:
                                pass
                    finally:
                        row["killed_processes"] = len(kill_process_tree(process.pid))
                        process.wait(timeout=60)
                    row["killed_after_s"] = time.monotonic() - started
                    row["held"] = f"{held.service} {held.method} {held.path}" if held else "none: the run ended first"
            if kill_at is not None:
                row["left"] = resource_counts(aws_inventory(aws_clients(endpoint)))
                rerun = run_site(SITE_PLAYBOOK, [bed.inventory], extra_vars_file, env, timeout=timeout)
                (workdir / "rerun.json").write_text(rerun.output_text())
                row.update(seconds=rerun.seconds, rc=rerun.run.returncode)
                if rerun.run.returncode != 0:
                    print(f"    the re-run failed:\n{rerun.describe()[-3000:]}", flush=True)
            row["counts"] = resource_counts(aws_inventory(aws_clients(endpoint)))
        finally:
            bed.down()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=3, help="fleet size (default 3)")
    parser.add_argument("--points", type=int, default=4, help="kill points drawn (default 4)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one site.yml run may take")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs and each re-run's JSON)")
    args = parser.parse_args()
    if args.devices < 1 or args.points < 1:
        parser.error("--devices and --points must be at least 1")
    with bench_workdir("killed_site", args.keep) as workdir:
        extra_vars_file = site_extra_vars_file(workdir)

        print(f"  clean run, {args.devices} device(s)...", flush=True)
        clean = fleet_run(args.devices, extra_vars_file, workdir / "clean", None, args.timeout)
        print(f"  {json.dumps(clean)}", flush=True)
        if clean["rc"] != 0:
            sys.exit("killed_site: the clean run failed; nothing to compare with")
        draw = random.Random(args.seed)  # noqa: S311 (seeded on purpose: the points can be replayed)
        points = sorted(draw.sample(range(1, clean["writes"] + 1), min(args.points, clean["writes"])))
        rows = []
        for point in points:
            print(f"  killed at write {point} of {clean['writes']}...", flush=True)
            row = fleet_run(args.devices, extra_vars_file, workdir / f"killed-{point}", point, args.timeout)
            rows.append(row)
            print(f"  {json.dumps(row)}", flush=True)

    print()
    print(f"clean run: {clean['seconds']:.1f} s, {clean['writes']} write requests, counts {clean['counts']}")
    header = ("kill at", "killed after s", "re-run rc", "re-run s", "counts vs clean run")
    print(f"{header[0]:>7} {header[1]:>14} {header[2]:>9} {header[3]:>8}  {header[4]:<28} held request")
    for row in rows:
        differing = {k: (v, clean["counts"][k]) for k, v in row["counts"].items() if v != clean["counts"][k]}
        print(
            f"{row['kill_at']:>7} {row['killed_after_s']:>14.1f} {row['rc']:>9} {row['seconds']:>8.1f}  "
            f"{'equal' if not differing else str(differing):<28} {row['held']}"
        )
    return 0 if all(row["rc"] == 0 and row["counts"] == clean["counts"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
