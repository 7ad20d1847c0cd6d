"""Where stand-in archives are cached, and how one is written there (shared by every stand-in's build)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path


def default_out_dir() -> Path:
    cache = os.environ.get("EDGEML_CACHE") or str(Path.home() / ".cache" / "edgeml")
    return Path(cache) / "standins"


def write_named_by_content(data: bytes, out_dir: Path | None, prefix: str, suffix: str) -> tuple[Path, str]:
    """Write ``data`` as ``<prefix>-<first 12 of sha256><suffix>``; returns the path and the full sha256.

    Named by content, so checkouts with different stand-in sources can share one cache.
    """
    out_dir = Path(out_dir) if out_dir else default_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    target = out_dir / f"{prefix}-{digest[:12]}{suffix}"
    if not target.is_file() or target.read_bytes() != data:
        # Written aside and renamed, so a concurrent reader never sees half an archive.
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".standin-", delete=False) as tmp:
            tmp.write(data)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, target)
    return target, digest


def build_command(doc: str, build, argv: list[str] | None = None) -> int:
    """Every stand-in's command line: ``build.py [--out-dir DIR]`` builds its archive and prints its path, sha256 and
    version as JSON."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=None, help="where to write the archive")
    args = parser.parse_args(argv)
    print(json.dumps(build(args.out_dir)))
    return 0


def paho_files() -> dict[str, bytes]:
    """paho-mqtt's sources (pure Python, the controller's pinned copy) by path inside the package folder, for the
    stand-ins that ship it beside their agents so a device needs nothing but python3."""
    import paho

    package = Path(paho.__file__).resolve().parent
    return {
        path.relative_to(package).as_posix(): path.read_bytes()
        for path in sorted(package.rglob("*"))
        if path.is_file() and path.suffix in (".py", ".typed")
    }
