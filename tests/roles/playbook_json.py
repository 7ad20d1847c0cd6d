"""Run ansible-playbook with the JSON callback and read per-host task results.

Used by the role tests that run playbooks on localhost (rendering, GPU detection)
and against simulated edge devices.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class PlaybookRun:
    returncode: int
    output: dict
    stderr: str

    def results(self, task_name: str) -> dict[str, dict]:
        """{host: result} of the last task with this name (a role's tasks are named "<role> : <name>")."""
        found: dict[str, dict] = {}
        for play in self.output.get("plays", []):
            for task in play.get("tasks", []):
                if task["task"]["name"].split(" : ", 1)[-1] == task_name:
                    found = task["hosts"]
        return found

    def task_names(self, host: str, include_skipped: bool = False) -> list[str]:
        """Names (without the role prefix) of the tasks that ran on host."""
        return [
            task["task"]["name"].split(" : ", 1)[-1]
            for play in self.output.get("plays", [])
            for task in play.get("tasks", [])
            if host in task["hosts"] and (include_skipped or not task["hosts"][host].get("skipped"))
        ]

    def failure_messages(self) -> list[str]:
        return [
            str(result.get("msg", ""))
            for play in self.output.get("plays", [])
            for task in play.get("tasks", [])
            for result in task["hosts"].values()
            if result.get("failed")
        ]

    def stopping_failure(self, host: str) -> tuple[str, str]:
        """(task name, message) of the last task that failed on host: the one that stopped the play (a failure
        caught by a rescue comes earlier). Fails the test when no task failed there."""
        found = None
        for play in self.output.get("plays", []):
            for task in play.get("tasks", []):
                result = task["hosts"].get(host, {})
                if result.get("failed") and not result.get("ignore_errors"):
                    messages = [str(result.get("msg", ""))] + [
                        str(item.get("msg", "")) for item in result.get("results", []) if item.get("failed")
                    ]
                    found = task["task"]["name"].split(" : ", 1)[-1], " ".join(messages)
        if found is None:
            raise AssertionError(f"no task failed on {host}: {self.describe()}")
        return found

    def stats(self, host: str) -> dict:
        return self.output.get("stats", {}).get(host, {})

    def describe(self) -> str:
        return f"rc={self.returncode}\nfailures={self.failure_messages()}\nstderr tail:\n{self.stderr[-2000:]}"


def playbook_invocation(
    playbook: Path, inventory: str | Path, *args: str, extra_vars: dict | None = None, env: dict | None = None
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of ansible-playbook with this repo's ansible.cfg and the JSON callback."""
    environment = dict(env or os.environ)
    environment.update(
        ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
    )
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), str(playbook), *args]
    if extra_vars:
        argv += ["--extra-vars", json.dumps(extra_vars)]
    return argv, environment


def run_playbook(
    playbook: Path,
    inventory: str | Path,
    *args: str,
    extra_vars: dict | None = None,
    env: dict | None = None,
    timeout: float = 900,
) -> PlaybookRun:
    argv, environment = playbook_invocation(playbook, inventory, *args, extra_vars=extra_vars, env=env)
    proc = subprocess.run(argv, capture_output=True, text=True, env=environment, cwd=REPO_ROOT, timeout=timeout)
    try:
        output = json.loads(proc.stdout)
    except json.JSONDecodeError:
        output = {"unparsed_stdout": proc.stdout[-4000:]}
    stderr = proc.stderr + (proc.stdout[-4000:] if "unparsed_stdout" in output else "")
    return PlaybookRun(proc.returncode, output, stderr)


def localhost_inventory(tmp_path: Path, hosts: dict[str, dict] | None = None) -> Path:
    """An inventory of local-connection hosts using this interpreter (pyenv shims confuse discovery)."""
    hosts = hosts or {"localhost": {}}
    lines = ["all:", "  hosts:"]
    for name, host_vars in hosts.items():
        merged = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}
        lines.append(f"    {name}: {json.dumps(merged)}")
    path = tmp_path / "inventory.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def playbook_aws_client_config(**inventory_vars) -> dict:
    """The botocore settings playbooks/vars/aws_client.yml gives the AWS modules, rendered with these inventory
    variables (its defaults where unset), for tests and benchmarks that call a module outside a playbook."""
    import jinja2
    import yaml

    document = yaml.safe_load((REPO_ROOT / "playbooks" / "vars" / "aws_client.yml").read_text())

    def render(value):
        if isinstance(value, dict):
            return {key: render(item) for key, item in value.items()}
        return yaml.safe_load(jinja2.Environment().from_string(value).render(**inventory_vars))  # noqa: S701

    return render(document["__edgeml_aws_client_config"])


def run_module_process(module: str, args: dict, args_file: Path, timeout: int = 300) -> dict:
    """Run one of the collection's modules once as Ansible's module process does (its arguments file, the
    collection on PYTHONPATH) and return its JSON result; a process that printed no JSON reads as failed with
    its stderr's tail. ``module`` is the short name (``iot_device_identity``)."""
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / ".collections"))
    done = subprocess.run(
        [sys.executable, "-m", f"ansible_collections.edgeml.greengrass.plugins.modules.{module}", str(args_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"failed": True, "msg": f"rc={done.returncode}, no JSON result: {done.stderr[-2000:]}"}


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # /proc/PID/stat: "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def kill_process_tree(root: int) -> set[int]:
    """SIGKILL a process and every descendant, as a machine losing power or an OOM kill of the whole run would.

    Killing the process group is not enough: ansible-core's workers start sessions of their own. The tree is walked
    by parent PID and each process is stopped (SIGSTOP) as it is found, so nothing forks or is re-parented while
    the tree is collected; then all are killed at once. Returns the PIDs killed."""
    frozen: set[int] = set()
    frontier = {root}
    while frontier:
        for pid in frontier:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        frozen |= frontier
        frontier = set().union(*(_children(pid) for pid in frontier)) - frozen
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return frozen


def without_unsafe_markers(value):
    """ansible-inventory's JSON with the markers of values Ansible will not template (all that an inventory plugin
    read from AWS) taken off: {"__ansible_unsafe": "10.0.0.5"} -> "10.0.0.5"."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: without_unsafe_markers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_unsafe_markers(item) for item in value]
    return value
