"""Where a fleet run's CPU time goes: the simulated devices, the controller (Ansible), the AWS endpoint.

On the test bed every simulated device shares the machine's few cores with the controller, so a fleet
run's wall time has a floor of (CPU seconds of all of them) / cores, whatever Ansible's forks do. To say
how much of T(N) is device work (which real devices do on their own CPUs, in parallel) and how much is
the controller's, each party's processes are put into a cgroup v1 ``cpuacct`` group of its own and its
``cpuacct.usage`` is read around each run. Children inherit the group, so everything a device runs over
SSH (apt, pip, the modules) is counted to it.

Where cgroup v1 ``cpuacct`` is not mounted or not writable, ``CpuAccounting.available`` is False and the
bench prints that the split was not measured (it never estimates it).
"""

from __future__ import annotations

import os
from pathlib import Path

CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")
PARTIES = ("devices", "controller", "aws_endpoint")


def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc; a process that exits meanwhile is skipped)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The comm field may hold spaces and parentheses: the parent pid is the 2nd field after the last ')'.
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine spent not idle since boot (/proc/stat, every core)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuAccounting:
    def __init__(self, name: str):
        self.root = CPUACCT_ROOT / name
        self.available = False
        self.reason = ""
        try:
            for party in PARTIES:
                (self.root / party).mkdir(parents=True, exist_ok=True)
            self.available = True
        except OSError as exc:
            self.reason = f"cgroup v1 cpuacct not usable at {CPUACCT_ROOT}: {exc.strerror or exc}"

    def assign(self, party: str, pid: int) -> None:
        """Put pid and its descendants (now and later) into the party's group."""
        if not self.available:
            return
        for member in descendants(pid):
            try:
                (self.root / party / "cgroup.procs").write_text(f"{member}\n")
            except OSError:
                pass  # exited meanwhile

    def usage_seconds(self) -> dict[str, float]:
        """CPU seconds each party has used since it was assigned, plus the whole machine's."""
        usage = {"machine": machine_cpu_seconds()}
        if self.available:
            for party in PARTIES:
                usage[party] = int((self.root / party / "cpuacct.usage").read_text()) / 1e9
        return usage

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {party: after[party] - before[party] for party in after}

    def close(self) -> None:
        """Move every process left back to the root group and remove the groups."""
        if not self.available:
            return
        for party in PARTIES:
            group = self.root / party
            try:
                for member in (group / "cgroup.procs").read_text().split():
                    try:
                        (CPUACCT_ROOT / "cgroup.procs").write_text(f"{member}\n")
                    except OSError:
                        pass
                group.rmdir()
            except OSError:
                pass
        try:
            self.root.rmdir()
        except OSError:
            pass
