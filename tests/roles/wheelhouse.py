"""A wheelhouse of the inference runtime's wheels on the controller, downloaded once and cached.

Simulated devices (Debian 12, Python 3.11, x86_64) install their inference runtime from it with
`--no-index --find-links` (the inference_runtime role's offline option), so test runs do not
fetch ~150 MB from PyPI per device: MXNet, numpy 1.23 and OpenCV for the MXNet backend (Greengrass V1),
ONNX Runtime, numpy 2 and OpenCV for the ONNX Runtime backend (Greengrass V2's default), and the V2 detector's
IPC client (awsiotsdk). `ensure_runtime_wheelhouse` gives one folder with all of them (each backend's pins pick
their own numpy), linking the cached wheels instead of downloading them again.

    python -m tests.roles.wheelhouse                  # prints the wheelhouse directory
    python -m tests.roles.wheelhouse --greengrass-v2  # the one with awsiotsdk as well

The directory is ${EDGEML_CACHE:-~/.cache/edgeml}/wheels/<python>-<platform>-<hash of the pins>,
pip's cache ${EDGEML_CACHE}/pip. A finished wheelhouse carries a stamp file and is reused as is.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from testbed.edge_devices import flocked

# The role's choices for a Debian 12 device, Python 3.11, no GPU (roles/inference_runtime/vars/main.yml, through
# the inference_runtime_requirements filter); a test keeps them equal.
REQUIREMENTS = ("mxnet==1.9.1", "numpy==1.23.5", "opencv-python-headless==4.11.0.86")
ONNX_REQUIREMENTS = ("onnxruntime==1.24.4", "numpy==2.2.6", "opencv-python-headless==4.11.0.86")
# The same pins for the Pythons of the bed's devices: Debian 12's 3.11 and Debian 13's 3.13 (the role's table has
# onnxruntime 1.24.4 and numpy 2.2.6 for both). MXNet's numpy 1.23 has wheels up to Python 3.11 only.
ONNX_PYTHONS = ("3.11", "3.12", "3.13")
MXNET_PYTHONS = ("3.8", "3.9", "3.10", "3.11")
# The Greengrass V2 detector's IPC client (roles/greengrass_v2_detector/defaults/main.yml); a test keeps them equal.
GREENGRASS_V2_REQUIREMENTS = ("awsiotsdk==1.29.0", "awscrt==0.32.1")
STAMP = ".complete"
DEVICE_PLATFORM = "manylinux2014_x86_64"
# Also taken for a manylinux2014 (glibc 2.17) platform: onnxruntime's wheels need glibc 2.27/2.28, which every
# device this builds for has (Debian 12: 2.36). pip does not widen an explicit --platform by itself.
NEWER_MANYLINUX = ("manylinux_2_27", "manylinux_2_28")


def cache_root() -> Path:
    return Path(os.environ.get("EDGEML_CACHE") or Path.home() / ".cache" / "edgeml")


def wheelhouse_dir(python_version: str, platform: str, requirements=REQUIREMENTS) -> Path:
    digest = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:12]
    return cache_root() / "wheels" / f"py{python_version}-{platform}-{digest}"


def build_once(target: Path, requirements, fill) -> Path:
    """target, made by fill(partial_dir) unless already complete; the stamp is written only after fill succeeded,
    and the folder appears under its name in one rename, so an interrupted build is never taken as done. Under a
    lock: parallel test workers wait for one build instead of deleting each other's partial folder."""
    if (target / STAMP).exists():
        return target
    with flocked(target.with_name(target.name + ".lock")):
        if (target / STAMP).exists():  # built by another process while this one waited
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        fill(partial)
        (partial / STAMP).write_text("\n".join(requirements) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target


def ensure_wheelhouse(python_version: str = "3.11", platform: str = DEVICE_PLATFORM, requirements=REQUIREMENTS) -> Path:
    """Download the wheels (and their dependencies) for that Python and platform unless already there."""

    def download(partial: Path) -> None:
        environment = dict(os.environ, PIP_CACHE_DIR=str(cache_root() / "pip"), PIP_DISABLE_PIP_VERSION_CHECK="1")
        # --only-binary with --python-version/--platform: wheels for the device, not for this controller.
        argv = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
        argv += ["--python-version", python_version, "--implementation", "cp", "--platform", platform]
        if platform.startswith("manylinux2014_"):
            for newer in NEWER_MANYLINUX:
                argv += ["--platform", platform.replace("manylinux2014", newer)]
        argv += ["--dest", str(partial), *requirements]
        result = subprocess.run(argv, capture_output=True, text=True, env=environment)
        if result.returncode != 0:
            raise RuntimeError(f"pip download failed for the wheelhouse ({' '.join(argv)}):\n{result.stderr[-3000:]}")

    return build_once(wheelhouse_dir(python_version, platform, requirements), requirements, download)


def ensure_runtime_wheelhouse(
    python_version: str = "3.11", platform: str = DEVICE_PLATFORM, extras=GREENGRASS_V2_REQUIREMENTS
) -> Path:
    """One folder with both backends' wheels and the extras' wheels (hard links into the cached wheelhouses)."""
    if python_version not in ONNX_PYTHONS:
        raise ValueError(f"no ONNX Runtime pins for Python {python_version} in the test bed's wheelhouse")
    parts = [
        ensure_wheelhouse(python_version, platform, ONNX_REQUIREMENTS),
        ensure_wheelhouse(python_version, platform, extras),
    ]
    requirements = ONNX_REQUIREMENTS + tuple(extras)
    if python_version in MXNET_PYTHONS:  # MXNet's numpy 1.23 has no wheels past Python 3.11
        parts.append(ensure_wheelhouse(python_version, platform))
        requirements = REQUIREMENTS + requirements

    def link(partial: Path) -> None:
        for part in parts:
            for wheel in part.glob("*.whl"):
                if not (partial / wheel.name).exists():
                    try:
                        os.link(wheel, partial / wheel.name)
                    except OSError:  # another file system
                        shutil.copy2(wheel, partial / wheel.name)

    return build_once(wheelhouse_dir(python_version, platform, requirements), requirements, link)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default="3.11")
    parser.add_argument("--platform", default=DEVICE_PLATFORM)
    parser.add_argument("--greengrass-v2", action="store_true", help="with the V2 detector's awsiotsdk as well")
    options = parser.parse_args(argv)
    ensure = ensure_runtime_wheelhouse if options.greengrass_v2 else ensure_wheelhouse
    print(ensure(options.python_version, options.platform))
    return 0


if __name__ == "__main__":
    sys.exit(main())
