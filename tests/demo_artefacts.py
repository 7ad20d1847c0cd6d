"""Build what the demo's simulated fleet needs from the test bed, and print it as Ansible extra vars.

    python -m tests.demo_artefacts --out DIR > artefacts.yml

- the stand-in Greengrass V1 core archive and the stand-in Greengrass V2 nucleus archive (test equipment:
  AWS's archives cannot be downloaded here),
- a small real SSD-shaped MXNet model, packed like the SageMaker artefact (tar.gz of
  deploy_model_algo_1-symbol.json and deploy_model_algo_1-0000.params),
- a wheelhouse of the inference runtime for the devices (so each device does not fetch ~120 MB), with the
  Greengrass V2 detector's IPC client (awsiotsdk) that V2 hosts add to it,
- a sample image whose detections are known (two coloured boxes on grey).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.inference.small_ssd import export_small_ssd, write_synthetic_image
from tests.roles.wheelhouse import ensure_runtime_wheelhouse

REPO_ROOT = Path(__file__).resolve().parents[1]
# (row, column) of the 4x4 grid -> RGB colour the small model classifies.
SAMPLE_BOXES = {(1, 2): (0, 0, 255), (2, 0): (255, 255, 0)}


def model_archive(out: Path) -> Path:
    """Byte for byte the same archive on every build (fixed member times and owners, gzip header without name or
    time): the model's conversion for ONNX Runtime is keyed on the archive's sha256, and the test modules running side
    by side share the controller's conversion cache, so archives that differed only in their timestamps would make
    each module convert again and give the detector a new component version."""
    prefix = export_small_ssd(out / "model")
    archive = out / "small-ssd-model.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for suffix in ("-symbol.json", "-0000.params"):
            path = Path(f"{prefix}{suffix}")
            data = path.read_bytes()
            member = tarfile.TarInfo(path.name)
            member.size, member.mode, member.mtime = len(data), 0o644, 0
            tar.addfile(member, io.BytesIO(data))
    with archive.open("wb") as stream, gzip.GzipFile(filename="", mode="wb", fileobj=stream, mtime=0) as packed:
        packed.write(raw.getvalue())
    return archive


def standin_core_archive() -> dict:
    built = subprocess.run(
        [sys.executable, "-m", "testbed.standins.greengrass_v1_core.build"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(built.stdout.strip().splitlines()[-1])


def standin_nucleus_archive() -> dict:
    built = subprocess.run(
        [sys.executable, "-m", "testbed.standins.greengrass_v2_nucleus.build"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(built.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    core = standin_core_archive()
    nucleus = standin_nucleus_archive()
    model = str(model_archive(out))
    artefacts = {
        "greengrass_v1_core_archive_src": core["path"],
        "greengrass_v1_core_archive_checksum": core["sha256"],
        "greengrass_v1_detector_model_archive": model,
        "greengrass_v2_nucleus_archive_src": nucleus["path"],
        "greengrass_v2_nucleus_archive_checksum": nucleus["sha256"],
        "greengrass_v2_nucleus_version": nucleus["version"],
        "greengrass_v2_detector_model_archive": model,
        "inference_runtime_wheelhouse_src": str(ensure_runtime_wheelhouse()),
        "smoke_test_image": str(write_synthetic_image(out / "sample.png", 640, 480, SAMPLE_BOXES)),
    }
    # JSON is valid YAML, and ansible-playbook -e @file reads either.
    print(json.dumps(artefacts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
