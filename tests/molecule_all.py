"""Run `molecule test` for every scenario under molecule/ (except molecule/shared), one after another.

    python -m tests.molecule_all                     # every scenario
    python -m tests.molecule_all --scenario testbed_smoke --scenario greengrass_v1_core

Prints a summary table (scenario, result, seconds) and exits non-zero if any scenario failed.
Each scenario's full output goes to stdout as it runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOT_SCENARIOS = {"shared"}


def discover(root: Path = REPO_ROOT) -> list[str]:
    return sorted(
        path.parent.name for path in (root / "molecule").glob("*/molecule.yml") if path.parent.name not in NOT_SCENARIOS
    )


def molecule_executable() -> str:
    beside_python = Path(sys.executable).parent / "molecule"
    return str(beside_python) if beside_python.exists() else shutil.which("molecule") or "molecule"


def run_scenario(name: str) -> tuple[bool, float]:
    print(f"\n=== molecule test -s {name}", flush=True)
    started = time.monotonic()
    # No colour codes in CI logs. Molecule writes each scenario's own ansible.cfg (see molecule.yml `ansible.cfg`).
    env = {**os.environ, "PY_COLORS": "0", "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1"}
    result = subprocess.run([molecule_executable(), "test", "-s", name], cwd=REPO_ROOT, env=env, check=False)
    return result.returncode == 0, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.molecule_all", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", action="append", default=None, help="run only this scenario (repeatable)")
    args = parser.parse_args(argv)

    available = discover()
    wanted = args.scenario or available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        print(
            f"molecule_all: no scenario {', '.join(unknown)} (expected one of: {', '.join(available) or 'none'})",
            file=sys.stderr,
        )
        return 2
    if not wanted:
        print("molecule_all: no scenarios under molecule/", file=sys.stderr)
        return 2

    results = [(name, *run_scenario(name)) for name in wanted]

    width = max(len("scenario"), *(len(name) for name, _, _ in results))
    print(f"\n{'scenario':<{width}}  result  seconds")
    for name, passed, seconds in results:
        print(f"{name:<{width}}  {'passed' if passed else 'FAILED':<6}  {seconds:7.1f}")
    failed = [name for name, passed, _ in results if not passed]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
