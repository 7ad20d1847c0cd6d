"""The execution environment of execution-environment.yml, without a container engine (none runs here).

What an `ansible-builder build` would put in the image, made on this machine from the same inputs:
- the build context, by `ansible-builder create` (Dockerfile, galaxy and pip requirements, the collection archive);
- the collections: this repository built with `ansible-galaxy collection build` and installed from that archive,
  beside the dependencies the definition pins (taken from the pinned `ansible` package, as galaxy is not reachable;
  their versions are checked against the definition's);
- the Python packages: a clean virtual environment with the definition's ansible-core and ansible-runner, its pip
  requirements and what `ansible-builder introspect` reads from the installed collections (the image's builder
  stage runs the same introspection), under constraints.txt.
Not reproduced: the base image and its system packages (bindep is checked as text), the container itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFINITION = REPO_ROOT / "execution-environment.yml"
# Inputs of the virtual environment (with the introspected requirements): a change to any of them makes a new one.
VENV_INPUTS = ("execution-environment.yml", "requirements.txt", "constraints.txt", "meta/execution-environment.yml")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeml-greengrass"
BIN = Path(sys.executable).parent


@dataclass
class ExecutionEnvironment:
    context: Path  # ansible-builder create's output
    collections: Path  # an ANSIBLE_COLLECTIONS_PATH entry (holds ansible_collections/)
    venv: Path
    introspected_pip: list[str]
    introspected_bindep: list[str]

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with this environment's programs first on PATH and its collections only."""
        return dict(
            base,
            PATH=os.pathsep.join([str(self.bin), base.get("PATH", os.defpath)]),
            ANSIBLE_COLLECTIONS_PATH=str(self.collections),
        )


def definition() -> dict:
    return yaml.safe_load(DEFINITION.read_text())


def _run(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def _dependency_collection(fqcn: str) -> Path:
    """Where the pinned ``ansible`` package keeps a collection."""
    import ansible_collections

    namespace, name = fqcn.split(".")
    for root in ansible_collections.__path__:
        path = Path(root) / namespace / name
        if (path / "MANIFEST.json").exists():
            return path
    raise FileNotFoundError(f"{fqcn} is not in the ansible package")


def collection_version(path: Path) -> str:
    return json.loads((path / "MANIFEST.json").read_text())["collection_info"]["version"]


def build(workdir: Path) -> ExecutionEnvironment:
    """The context, the collections and the virtual environment of the definition, under ``workdir``."""
    spec = definition()
    # The definition takes the collection's archive from execution-environment/ beside it: a copy of the definition
    # in workdir, with the archive built there, leaves the repository untouched.
    project = workdir / "ee-project"
    archives = project / "execution-environment"
    archives.mkdir(parents=True)
    shutil.copy(DEFINITION, project / DEFINITION.name)
    _run(str(BIN / "ansible-galaxy"), "collection", "build", str(REPO_ROOT), "--output-path", str(archives), "--force")
    context = workdir / "ee-context"
    _run(str(BIN / "ansible-builder"), "create", "-f", str(project / DEFINITION.name), "-c", str(context))

    collections = workdir / "ee-collections"
    [archive] = sorted(archives.glob("edgeml-greengrass-*.tar.gz"))
    # --force and a working directory outside the checkout: ansible-galaxy would otherwise find the collection
    # linked in .collections (the checkout's ansible.cfg) and skip installing it.
    _run(
        str(BIN / "ansible-galaxy"),
        "collection",
        "install",
        str(archive),
        "-p",
        str(collections),
        "--no-deps",
        "--force",
        cwd=workdir,
    )
    for item in spec["dependencies"]["galaxy"]["collections"]:
        if item.get("type") == "file":
            continue
        source = _dependency_collection(item["name"])
        namespace, name = item["name"].split(".")
        target = collections / "ansible_collections" / namespace / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source, target_is_directory=True)

    pip_file, bindep_file = workdir / "introspected-requirements.txt", workdir / "introspected-bindep.txt"
    _run(
        str(BIN / "ansible-builder"),
        "introspect",
        str(collections),
        "--write-pip",
        str(pip_file),
        "--write-bindep",
        str(bindep_file),
    )
    introspected_pip = [line for line in pip_file.read_text().splitlines() if line and not line.startswith("#")]
    introspected_bindep = [line for line in bindep_file.read_text().splitlines() if line and not line.startswith("#")]
    return ExecutionEnvironment(context, collections, _venv(spec, pip_file), introspected_pip, introspected_bindep)


def _venv(spec: dict, introspected: Path) -> Path:
    """A clean virtual environment with what the image's Python gets; cached by its inputs, made once at a time."""
    inputs = [(REPO_ROOT / name).read_bytes() for name in VENV_INPUTS] + [introspected.read_bytes()]
    key = hashlib.sha256(b"".join(inputs)).hexdigest()[:16]
    path = CACHE / f"ee-venv-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "ee-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / "complete").exists():
            return path
        shutil.rmtree(path, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
        dependencies = spec["dependencies"]
        _run(
            str(path / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            dependencies["ansible_core"]["package_pip"],
            dependencies["ansible_runner"]["package_pip"],
            *dependencies["python"],
            "-r",
            str(introspected),
            "-c",
            str(REPO_ROOT / "constraints.txt"),
        )
        (path / "complete").write_text(key + "\n")
        return path
