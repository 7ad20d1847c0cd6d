"""Build the stand-in Greengrass V2 nucleus archive, byte for byte the same on every run.

    python -m testbed.standins.greengrass_v2_nucleus.build [--out-dir DIR]

compiles src/StandinNucleus.java (javac --release 11, so every supported distribution's
default-jre-headless runs it) into lib/Greengrass.jar, lays it out like AWS's
greengrass-nucleus-latest.zip (lib/Greengrass.jar, bin/, conf/recipe.yaml, LICENSE at the top) and writes
greengrass-nucleus-standin-<first 12 of sha256>.zip into DIR (default
${EDGEML_CACHE:-~/.cache/edgeml}/standins). Prints one JSON line: {"path", "sha256", "version"}.
Deterministic: entries sorted, one fixed timestamp, fixed modes, no extra fields, so the checksum only
changes when the stand-in's source (or the JDK's javac output) does.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from testbed.standins._cache import build_command, paho_files, write_named_by_content

HERE = Path(__file__).resolve().parent
TESTBED = HERE.parents[1]
SOURCE = HERE / "src" / "StandinNucleus.java"
TREE = HERE / "tree"
MAIN_CLASS = "StandinNucleus"
# Zip timestamps are local DOS times; a constant keeps the bytes stable (2024-01-01 00:00:00).
FIXED_TIME = (2024, 1, 1, 0, 0, 0)
JAVA_RELEASE = "11"


def version() -> str:
    return (HERE / "VERSION").read_text().strip()


def recipe(ver: str) -> bytes:
    # The fields of AWS's conf/recipe.yaml that the role reads (ComponentVersion) and a reader expects.
    return (
        "---\n"
        "RecipeFormatVersion: '2020-01-25'\n"
        "ComponentName: aws.greengrass.Nucleus\n"
        "ComponentType: aws.greengrass.nucleus\n"
        "ComponentDescription: edgeml stand-in nucleus (test equipment, not AWS software)\n"
        "ComponentPublisher: edgeml.greengrass tests\n"
        f"ComponentVersion: '{ver}'\n"
    ).encode()


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.create_system = 3  # Unix, so external_attr carries the mode
    info.external_attr = ((0o40000 if name.endswith("/") else 0o100000) | mode) << 16
    info.compress_type = zipfile.ZIP_STORED if name.endswith("/") else zipfile.ZIP_DEFLATED
    return info


def _zip(files: dict[str, tuple[bytes, int]]) -> bytes:
    """files: {name: (data, mode)}; folders are added for every parent, everything sorted."""
    names = set(files)
    for name in list(files):
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            names.add("/".join(parts[:depth]) + "/")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in sorted(names):
            if name.endswith("/"):
                archive.writestr(_entry(name, 0o755), b"")
            else:
                data, mode = files[name]
                archive.writestr(_entry(name, mode), data, compresslevel=9)
    return out.getvalue()


def compile_classes(work: Path) -> dict[str, bytes]:
    javac = shutil.which("javac")
    if not javac:
        raise SystemExit("javac not found: the stand-in nucleus is built from Java source (install a JDK 11+)")
    classes = work / "classes"
    classes.mkdir()
    subprocess.run(
        [javac, "--release", JAVA_RELEASE, "-encoding", "UTF-8", "-d", str(classes), str(SOURCE)],
        check=True,
        capture_output=True,
        text=True,
    )
    return {path.relative_to(classes).as_posix(): path.read_bytes() for path in sorted(classes.rglob("*.class"))}


def jar_bytes(classes: dict[str, bytes], ver: str) -> bytes:
    manifest = f"Manifest-Version: 1.0\r\nMain-Class: {MAIN_CLASS}\r\nImplementation-Version: {ver}\r\n\r\n"
    files = {name: (data, 0o644) for name, data in classes.items()}
    files["META-INF/MANIFEST.MF"] = (manifest.encode(), 0o644)
    files["standin-version.txt"] = (f"{ver}\n".encode(), 0o644)
    return _zip(files)


def agent_files() -> dict[str, tuple[bytes, int]]:
    """lib/agent/: the deployment agent (Python, run by the jar), the bed's IPC stand-in and MQTT client, and
    paho-mqtt (pure Python, the controller's pinned copy) so the device needs nothing but python3."""
    sources = {
        "nucleus_agent.py": HERE / "agent" / "nucleus_agent.py",
        "recipes.py": HERE / "agent" / "recipes.py",
        "greengrass_ipc_server.py": TESTBED / "standins" / "greengrass_ipc" / "server.py",
        "client.py": TESTBED / "iot_data_plane" / "client.py",
    }
    files = {f"lib/agent/{name}": (path.read_bytes(), 0o644) for name, path in sources.items()}
    files.update({f"lib/agent/paho/{name}": (data, 0o644) for name, data in paho_files().items()})
    return files


def archive_bytes() -> bytes:
    ver = version()
    with tempfile.TemporaryDirectory(prefix="standin-nucleus-") as work:
        classes = compile_classes(Path(work))
    files: dict[str, tuple[bytes, int]] = {
        "lib/Greengrass.jar": (jar_bytes(classes, ver), 0o644),
        "conf/recipe.yaml": (recipe(ver), 0o644),
        **agent_files(),
    }
    for path in sorted(TREE.rglob("*")):
        if path.is_file():
            files[path.relative_to(TREE).as_posix()] = (path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)
    return _zip(files)


def build(out_dir: Path | None = None) -> dict[str, str]:
    target, digest = write_named_by_content(archive_bytes(), out_dir, "greengrass-nucleus-standin", ".zip")
    return {"path": str(target), "sha256": digest, "version": version()}


def main(argv: list[str] | None = None) -> int:
    return build_command(__doc__, build, argv)


if __name__ == "__main__":
    sys.exit(main())
