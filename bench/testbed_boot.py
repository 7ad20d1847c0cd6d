"""How fast and how heavy the simulated edge devices are (image already cached).

    python -m bench.testbed_boot [--fleet 10] [--reps-one 5] [--reps-fleet 3] [--reps-setup 3]

Prints medians of: `up` (boot until SSH answers and systemd is running) and `down` for 1 device
and for a fleet, memory per idle device (PSS and RSS summed over the container's processes and
its systemd-nspawn), and `ansible edge_devices -m setup` across the fleet. Run it on a quiet
machine: the numbers are wall-clock times on shared cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from testbed.edge_devices import EdgeDeviceBed, build_image, mounts_under

REPO_ROOT = Path(__file__).resolve().parents[1]


def timed_bed(name: str, count: int) -> tuple[EdgeDeviceBed, float]:
    bed = EdgeDeviceBed(name, count=count)
    started = time.monotonic()
    bed.up()
    return bed, time.monotonic() - started


def timed_down(bed: EdgeDeviceBed) -> float:
    started = time.monotonic()
    bed.down()
    return time.monotonic() - started


def smaps_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB."""
    pss = rss = 0
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    return pss, rss


def device_memory_kib(bed: EdgeDeviceBed) -> list[tuple[int, int]]:
    """Per device: PSS and RSS summed over its nspawn and every process whose root is its overlay."""
    devs = {os.stat(device.merged).st_dev: device for device in bed.devices}
    totals = {device.name: [0, 0] for device in bed.devices}
    for device in bed.devices:
        pss, rss = smaps_kib(device.pid)
        totals[device.name][0] += pss
        totals[device.name][1] += rss
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            device = devs.get(os.stat(entry / "root").st_dev)
            if device is None:
                continue
            pss, rss = smaps_kib(int(entry.name))
        except OSError:
            continue
        totals[device.name][0] += pss
        totals[device.name][1] += rss
    return [tuple(values) for values in totals.values()]


def median_line(label: str, values: list[float], unit: str = "s") -> str:
    shown = ", ".join(f"{value:.2f}" for value in values)
    return f"{label:<52} median {statistics.median(values):7.2f} {unit}   (runs: {shown})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.testbed_boot", description=__doc__.split("\n")[0])
    parser.add_argument("--fleet", type=int, default=10, help="devices in the large bed")
    parser.add_argument("--reps-one", type=int, default=5)
    parser.add_argument("--reps-fleet", type=int, default=3)
    parser.add_argument("--reps-setup", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (systemd-nspawn, overlay mounts)", file=sys.stderr)
        return 2
    build_image()
    prefix = f"bench-{os.getpid()}"
    print(f"image cached; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at start")

    up_one, down_one = [], []
    for rep in range(args.reps_one):
        bed, seconds = timed_bed(f"{prefix}-one-{rep}", 1)
        up_one.append(seconds)
        down_one.append(timed_down(bed))

    up_fleet, down_fleet, setup_times = [], [], []
    memory: list[tuple[int, int]] = []
    for rep in range(args.reps_fleet):
        bed, seconds = timed_bed(f"{prefix}-fleet-{rep}", args.fleet)
        try:
            up_fleet.append(seconds)
            if rep == 0:
                time.sleep(10)  # let boot-time jobs finish: measure idle devices
                memory = device_memory_kib(bed)
                env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
                ansible = str(Path(sys.executable).parent / "ansible")
                for _ in range(args.reps_setup):
                    started = time.monotonic()
                    result = subprocess.run(
                        [ansible, "edge_devices", "-i", str(bed.inventory), "-m", "ansible.builtin.setup"],
                        env=env, capture_output=True, text=True, check=False,
                    )  # fmt: skip
                    setup_times.append(time.monotonic() - started)
                    if result.returncode != 0 or result.stdout.count(" | SUCCESS =>") != args.fleet:
                        print(result.stdout[-2000:] + result.stderr[-2000:], file=sys.stderr)
                        raise SystemExit("bench: ansible setup failed on the fleet")
        finally:
            down_fleet.append(timed_down(bed))
            assert not mounts_under(bed.dir)

    pss = [kib / 1024 for kib, _ in memory]
    rss = [kib / 1024 for _, kib in memory]
    print()
    print(median_line("up, 1 device (boot until SSH + systemd up)", up_one))
    print(median_line("down, 1 device", down_one))
    print(median_line(f"up, {args.fleet} devices in parallel", up_fleet))
    print(median_line(f"down, {args.fleet} devices", down_fleet))
    print(median_line(f"ansible -m setup across {args.fleet} devices", setup_times))
    print(median_line("memory per idle device, PSS", pss, "MiB"))
    print(median_line("memory per idle device, RSS (shared pages counted)", rss, "MiB"))
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
