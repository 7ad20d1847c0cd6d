"""Build the stand-in Greengrass V1 core archive, byte for byte the same on every run.

    python -m testbed.standins.greengrass_v1_core.build [--out-dir DIR]

writes greengrass-standin-<first 12 of sha256>.tar.gz into DIR (default ${EDGEML_CACHE:-~/.cache/edgeml}/standins)
and prints one JSON line: {"path": ..., "sha256": ..., "version": ...}. Tests hand that path and
checksum to the role as greengrass_v1_core_archive_src / greengrass_v1_core_archive_checksum.
Deterministic: entries sorted, mtime fixed, owner root (0/0), modes normalised, gzip header without
name or time, so the checksum only changes when the stand-in's source does.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tarfile
from pathlib import Path

from testbed.standins._cache import build_command, paho_files, write_named_by_content

TREE = Path(__file__).resolve().parent / "tree"
# 2020-01-01T00:00:00Z, about when Greengrass 1.11 shipped; any constant will do.
FIXED_MTIME = 1577836800
SKIP_NAMES = {"__pycache__", ".pytest_cache"}


def version() -> str:
    return (TREE / "greengrass" / "ggc" / "core" / "VERSION").read_text().strip()


def _entries(tree: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES)
        base = Path(dirpath)
        if base != tree:
            found.append(base)
        found.extend(base / name for name in sorted(filenames) if not name.endswith(".pyc"))
    return sorted(found, key=lambda p: p.relative_to(tree).as_posix())


def library_files() -> dict[str, bytes]:
    """greengrass/ggc/core/lib/: the bed's MQTT client and paho-mqtt (pure Python, the controller's pinned copy),
    which standin_deployer.py connects with, so the device needs nothing but python3."""
    files = {"greengrass/ggc/core/lib/client.py": (TREE.parents[2] / "iot_data_plane" / "client.py").read_bytes()}
    files.update({f"greengrass/ggc/core/lib/paho/{name}": data for name, data in paho_files().items()})
    return files


def archive_bytes(tree: Path = TREE) -> bytes:
    # name -> (content, mode); content None for a folder. The tree's entries and, for the stand-in's own tree, the
    # library folder's, in one sorted order.
    entries: dict[str, tuple[bytes | None, int]] = {}
    for path in _entries(tree):
        name = path.relative_to(tree).as_posix()
        entries[name] = (
            (None, 0o755) if path.is_dir() else (path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)
        )
    if tree == TREE:
        for name, data in library_files().items():
            entries[name] = (data, 0o644)
            parent = Path(name).parent
            while parent.as_posix() not in entries:
                entries[parent.as_posix()] = (None, 0o755)
                parent = parent.parent
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(entries):
            data, mode = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def build(out_dir: Path | None = None) -> dict[str, str]:
    target, digest = write_named_by_content(archive_bytes(), out_dir, "greengrass-standin", ".tar.gz")
    return {"path": str(target), "sha256": digest, "version": version()}


def main(argv: list[str] | None = None) -> int:
    return build_command(__doc__, build, argv)


if __name__ == "__main__":
    sys.exit(main())
