"""Fleet provisioning time: playbooks/site.yml on 1, 4 and 16 simulated devices, first run and re-run.

For each fleet size: a fresh local AWS endpoint (recording every request it gets) and a fresh bed of
simulated devices (testbed), then `ansible-playbook playbooks/site.yml -i inventories/local_testbed
-i <bed inventory> -e @artefacts` twice, exactly as scripts/demo.sh runs it. The device image, the
wheelhouse and the demo artefacts are built once and cached before any timing. Measured:

- wall time of the first run and of the re-run (one sample each: a fleet run is minutes long);
- changed task results on the re-run (target 0), from the PLAY RECAP;
- AWS write calls on the re-run (target 0), from the endpoint's own request record, each request
  classified as read or write by its API operation (tests/e2e/fleet.py);
- T(N)/T(1) of the first run (target <= 4 for 16 devices; ansible.cfg sets forks = 16);
- where each run's CPU time went: the simulated devices, the controller (ansible-playbook and everything
  it starts) and the AWS endpoint, each counted by a cgroup of its own (bench/cpu_accounting.py), and the
  floor that puts under the wall time on this machine: (all of it) / cores. Real devices do their share on
  their own CPUs, in parallel; here they share the controller's cores.

Every device runs the same Greengrass generation (``--generation``, default v1, the reference
architecture; ``mixed`` keeps the demo inventory's split, where edge-03 is V2), so the sizes compare
like with like.

The machine's load average is printed next to each size: on a shared machine the figures depend on it.

    python bench/provision_fleet.py [--sizes 1,4,16] [--generation v1|v2|mixed] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "bench")]

from cpu_accounting import CpuAccounting  # noqa: E402

from testbed.edge_devices import EdgeDeviceBed  # noqa: E402
from tests.e2e.fleet import (  # noqa: E402
    SITE_PLAYBOOK,
    load_average,
    recording_endpoint,
    run_site,
    site_extra_vars_file,
)


def provision(
    size: int, extra_vars_file: Path, workdir: Path, timeout: float, accounting: CpuAccounting, extra_vars: dict
) -> dict:
    """Boot `size` devices on a fresh endpoint, run site.yml twice; the figures of both runs."""
    row: dict = {"devices": size, "load_start": load_average()}
    with recording_endpoint(workdir / "aws") as (endpoint, requests):
        accounting.assign("aws_endpoint", endpoint.process.pid)
        env = dict(os.environ, **endpoint.environment())
        started = time.monotonic()
        bed = EdgeDeviceBed(f"bench-provision-{os.getpid()}-{size}", count=size, tied_to_process=True).up()
        row["boot_s"] = time.monotonic() - started
        bed.write_endpoints(endpoint.device_endpoints())  # V2 devices report their deployments themselves
        for device in bed.devices:
            accounting.assign("devices", device.pid)

        def timed_run():
            before = accounting.usage_seconds()
            run = run_site(SITE_PLAYBOOK, [bed.inventory], extra_vars_file, env, extra_vars=extra_vars, timeout=timeout)
            return run, CpuAccounting.spent(before, accounting.usage_seconds())

        try:
            first, row["first_cpu"] = timed_run()
            (workdir / "first-run.json").write_text(first.output_text())
            row["first_s"] = first.seconds
            row["first_failed"] = sorted(h for h, s in first.recap.items() if s["failures"] or s["unreachable"])
            row["first_changed"] = sum(stats["changed"] for stats in first.recap.values())
            if row["first_failed"]:
                print(f"  {size} devices: first run failed on {row['first_failed']}:\n{first.describe()}", flush=True)
            mark = requests.mark()
            rerun, row["rerun_cpu"] = timed_run()
            (workdir / "re-run.json").write_text(rerun.output_text())
            calls = requests.calls(since=mark)
            row["rerun_s"] = rerun.seconds
            row["rerun_failed"] = sorted(h for h, s in rerun.recap.items() if s["failures"] or s["unreachable"])
            row["rerun_changed"] = sum(stats["changed"] for stats in rerun.recap.values())
            row["rerun_changed_tasks"] = rerun.changed_tasks()
            row["rerun_calls"] = len(calls)
            row["rerun_writes"] = [str(call) for call in calls if call.is_write]
        finally:
            bed.down()
    row["load_end"] = load_average()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16", help="comma-separated fleet sizes (default 1,4,16)")
    parser.add_argument(
        "--generation",
        choices=("v1", "v2", "mixed"),
        default="v1",
        help="Greengrass generation of every device (default v1); mixed: the demo inventory's (edge-03 is V2)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one site.yml run may take")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (runs' JSON output, AWS record)")
    args = parser.parse_args()
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: expected comma-separated numbers of devices, e.g. 1,4,16")
    if not sizes or min(sizes) < 1:
        parser.error(f"--sizes {args.sizes!r}: every size must be at least 1")
    if os.geteuid() != 0:
        sys.exit("provision_fleet: simulated devices need root (overlay mounts, systemd-nspawn)")

    # A SIGTERM (timeout, kill) unwinds like Ctrl-C, so the endpoint, the devices and the cgroups are cleaned up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix="bench-provision-fleet-"))
    os.environ["ANSIBLE_LOCAL_TEMP"] = str(workdir / "ansible-local-tmp")
    extra_vars = {} if args.generation == "mixed" else {"edgeml_greengrass_generation": args.generation}
    accounting = CpuAccounting(f"edgeml-bench-provision-{os.getpid()}")
    # This process first: ansible-playbook and all it starts inherit the controller's group; the endpoint
    # and the devices it starts are moved to theirs as soon as they run.
    accounting.assign("controller", os.getpid())
    try:
        # Cached parts first, outside any timing: the device image, wheelhouse, stand-in core, model.
        extra_vars_file = site_extra_vars_file(workdir)
        print(
            f"site.yml fleet provisioning, Greengrass generation {args.generation}; ansible forks = 16 "
            f"(ansible.cfg); {os.cpu_count()} CPUs",
            flush=True,
        )
        rows = []
        for size in sizes:
            print(f"  {size} device(s): booting and provisioning (load average {load_average()})...", flush=True)
            rows.append(
                provision(size, extra_vars_file, workdir / f"size-{size}", args.timeout, accounting, extra_vars)
            )
            print(f"  {size} device(s): {json.dumps(rows[-1])}", flush=True)
    finally:
        accounting.close()
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    header = (
        f"{'devices':>7} {'boot s':>7} {'first run s':>12} {'re-run s':>9} {'re-run changed':>15} "
        f"{'re-run AWS writes':>18} {'re-run AWS calls':>17} {'failed hosts':>13}  load avg start -> end"
    )
    print(header)
    for row in rows:
        failed = len(set(row["first_failed"]) | set(row["rerun_failed"]))
        print(
            f"{row['devices']:>7} {row['boot_s']:>7.0f} {row['first_s']:>12.0f} {row['rerun_s']:>9.0f} "
            f"{row['rerun_changed']:>15} {len(row['rerun_writes']):>18} {row['rerun_calls']:>17} {failed:>13}  "
            f"{row['load_start']} -> {row['load_end']}"
        )
    print()
    if not accounting.available:
        print(f"CPU split not measured: {accounting.reason}")
    else:
        cores = os.cpu_count() or 1
        print(
            "CPU seconds by party (devices / controller / AWS endpoint / whole machine, the rest is other load) "
            f"and the wall-time floor they set on {cores} cores, (devices + controller + endpoint) / cores:"
        )
        for row in rows:
            for run in ("first", "rerun"):
                cpu = row[f"{run}_cpu"]
                ours = cpu["devices"] + cpu["controller"] + cpu["aws_endpoint"]
                print(
                    f"  {row['devices']:>3} devices, {run:<6}: {cpu['devices']:7.1f} / {cpu['controller']:7.1f} / "
                    f"{cpu['aws_endpoint']:5.1f} / {cpu['machine']:7.1f} s; per device: devices "
                    f"{cpu['devices'] / row['devices']:.1f} s, controller {cpu['controller'] / row['devices']:.1f} s; "
                    f"floor {ours / cores:.0f} s of {row[run + '_s']:.0f} s wall"
                )
    by_size = {row["devices"]: row for row in rows}
    if 1 in by_size:
        for size, row in sorted(by_size.items()):
            if size > 1:
                ratio = row["first_s"] / by_size[1]["first_s"]
                print(f"T({size})/T(1), first run: {ratio:.2f}" + (" (target <= 4)" if size == 16 else ""))
    for row in rows:
        if row["rerun_writes"] or row["rerun_changed"]:
            print(
                f"{row['devices']} devices, re-run: changed {row['rerun_changed_tasks']}, writes {row['rerun_writes']}"
            )
    clean = all(not row["rerun_writes"] and not row["rerun_changed"] and not row["first_failed"] for row in rows)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
