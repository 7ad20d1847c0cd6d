"""The detector's two backends side by side on the seed's SSD512: MXNet 1.9.1 and ONNX Runtime (fp32).

The model is the seed's deployable ResNet-50 SSD512 symbol with random weights of the right shapes (random
weights time like trained ones), converted to ONNX by the collection's own converter (``ssd_model_onnx``'s
``_ssd_onnx.convert``, verified against MXNet on the seed's two 1080p frames first). Measured in one run:

1. time per frame: ``ObjectDetector.detect_file`` on each 1080p frame (decode, preprocess, forward, decode of the
   detections), both backends loaded in this process and timed in interleaved rounds so that background load
   hits both alike; medians of the whole call and of the forward pass (for ONNX Runtime: the session run plus the
   numpy MultiBoxDetection), and ONNX Runtime / MXNet ratios;
2. peak resident memory of a detector process per backend: a child process loads the model, runs both frames
   three times and reports its ``ru_maxrss``;
3. install size on a device per backend: the backend's pinned wheels (``tests/roles/wheelhouse.py``, the same
   the role installs on a Debian 12 / Python 3.11 device) installed with ``pip --target`` into an empty folder,
   measured with ``du``.

    python bench/inference_backends.py [--runs 10] [--no-install-size]

Load averages are printed before and after: the machine's other users compete for the same cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "files" / "inference_lambda"), str(REPO_ROOT / ".collections")]

import object_detector as od  # noqa: E402

BACKENDS = ("mxnet", "onnxruntime")
LABELS = ["blue_box", "yellow_box"]


def ensure_models(cache: Path) -> dict[str, Path]:
    """Prefixes of the seed SSD512 with random weights: MXNet checkpoint, and its ONNX conversion (own folder, so
    that no other benchmark's ``auto`` backend picks it up). Made once, cached."""
    from ansible_collections.edgeml.greengrass.plugins.module_utils import _ssd_onnx

    from tests.inference import seed_model  # imports MXNet: not in the memory-measuring children

    mxnet_dir, onnx_dir = cache / "seed-ssd512-random", cache / "seed-ssd512-random-onnx"
    mxnet_prefix = mxnet_dir / seed_model.SEED_PREFIX_NAME
    if not Path(f"{mxnet_prefix}-0000.params").is_file():
        print(f"exporting the seed SSD512 graph with random weights to {mxnet_dir} (~110 MB, once)")
        seed_model.export_seed_with_random_weights(mxnet_dir)
    onnx_prefix = onnx_dir / seed_model.SEED_PREFIX_NAME
    if not Path(f"{onnx_prefix}.onnx").is_file():
        print(f"converting it to ONNX in {onnx_dir} (once) and checking it against MXNet on the seed frames")
        checkpoint = _ssd_onnx.load_checkpoint(str(mxnet_prefix), 0)
        model, _ = _ssd_onnx.convert(checkpoint, 512)
        images = _ssd_onnx.read_images([str(path) for path in seed_model.seed_images()])
        report = _ssd_onnx.verify(checkpoint, model, images, 512, 1e-3, 1e-3)
        print(f"  verified: {report}")
        onnx_dir.mkdir(parents=True, exist_ok=True)
        partial = onnx_dir / "model.partial"
        partial.write_bytes(model)
        partial.rename(f"{onnx_prefix}.onnx")
    return {"mxnet": mxnet_prefix, "onnxruntime": onnx_prefix}


def detector(prefix: Path, backend: str) -> od.ObjectDetector:
    return od.ObjectDetector(od.DetectorConfig(model_path=str(prefix), backend=backend, class_labels=LABELS))


def child(prefix: str, backend: str, images: list[str]) -> int:
    """Load, run the frames three times, print the peak resident memory (KiB) as JSON. Nothing but the detector is
    imported (ONNX Runtime's process never loads MXNet), so each figure is what a device's detector takes."""
    logging.disable(logging.INFO)
    loaded = detector(Path(prefix), backend)
    for _ in range(3):
        for image in images:
            loaded.detect_file(image)
    # VmHWM, not getrusage's ru_maxrss: that one keeps the parent's peak across fork and exec.
    peak = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print(json.dumps({"backend": backend, "max_rss_kib": int(peak.split()[1])}))
    return 0


def peak_rss_mib(prefix: Path, backend: str, images: list[str]) -> float:
    argv = [sys.executable, __file__, "--child", backend, "--prefix", str(prefix), "--images", *images]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{backend} child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["max_rss_kib"] / 1024.0


def install_size_mib(requirements, wheels: Path) -> float:
    with tempfile.TemporaryDirectory() as target:
        argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels)]
        argv += ["--target", target, "--python-version", "3.11", "--only-binary=:all:", *requirements]
        done = subprocess.run(
            argv, capture_output=True, text=True, env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip install --target failed: {done.stderr[-2000:]}")
        size = subprocess.run(["du", "-sk", target], capture_output=True, text=True, check=True).stdout.split()[0]
    return int(size) / 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="timed rounds per frame and backend (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--no-install-size", action="store_true", help="skip the install sizes")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--images", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.prefix, args.child, args.images)
    from tests.inference import seed_model  # the parent only: it imports MXNet

    logging.basicConfig(level=logging.WARNING)
    if not seed_model.seed_files_present():
        print(f"seed graph/images not found in {seed_model.SEED_MODEL_DIR}", file=sys.stderr)
        return 2
    cache = Path(os.environ.get("EDGEML_CACHE", Path.home() / ".cache" / "edgeml")) / "bench"
    prefixes = ensure_models(cache)
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs")
    detectors = {backend: detector(prefixes[backend], backend) for backend in BACKENDS}
    for backend, loaded in detectors.items():
        print(f"{backend}: {dict(loaded.inference)}")
    images = [str(path) for path in seed_model.seed_images()]
    total = {backend: [] for backend in BACKENDS}
    forward = {backend: [] for backend in BACKENDS}
    same = True
    for round_index in range(args.warmup + args.runs):
        answers = {}
        for backend in BACKENDS if round_index % 2 == 0 else reversed(BACKENDS):
            for image in images:
                started = time.perf_counter()
                payload = detectors[backend].detect_file(image)
                elapsed = time.perf_counter() - started
                answers[(backend, image)] = [(d["class_id"], d["box_pixels"]) for d in payload["detections"]]
                if round_index >= args.warmup:
                    total[backend].append(elapsed * 1000.0)
                    forward[backend].append(payload["timing_ms"]["forward_ms"] + payload["timing_ms"]["postprocess_ms"])
        same = same and all(answers[("mxnet", image)] == answers[("onnxruntime", image)] for image in images)
    print(f"load average after timing: {os.getloadavg()}")
    print(f"\ntime per 1080p frame, medians of {args.runs} rounds x {len(images)} frames, interleaved:")
    for backend in BACKENDS:
        print(
            f"  {backend:12s} whole call {statistics.median(total[backend]):8.1f} ms"
            f"   forward + decode {statistics.median(forward[backend]):8.1f} ms"
        )
    ratio_total = statistics.median(total["onnxruntime"]) / statistics.median(total["mxnet"])
    ratio_forward = statistics.median(forward["onnxruntime"]) / statistics.median(forward["mxnet"])
    print(f"  ONNX Runtime / MXNet: whole call {ratio_total:.2f}x, forward + decode {ratio_forward:.2f}x")
    print(f"  same detections (class and pixel box, score >= 0.5) on every frame and round: {same}")

    del detectors
    print("\npeak resident memory of a detector process (load + 6 frames):")
    rss = {backend: peak_rss_mib(prefixes[backend], backend, images) for backend in BACKENDS}
    for backend in BACKENDS:
        print(f"  {backend:12s} {rss[backend]:8.0f} MiB")
    print(f"  ONNX Runtime / MXNet: {rss['onnxruntime'] / rss['mxnet']:.2f}x")

    if not args.no_install_size:
        from tests.roles import wheelhouse

        print("\ninstall size on a device (Debian 12, Python 3.11, x86_64; pinned wheels, pip --target):")
        sizes = {}
        for backend, requirements in (
            ("mxnet", wheelhouse.REQUIREMENTS),
            ("onnxruntime", wheelhouse.ONNX_REQUIREMENTS),
        ):
            sizes[backend] = install_size_mib(requirements, wheelhouse.ensure_wheelhouse(requirements=requirements))
            print(f"  {backend:12s} {sizes[backend]:8.0f} MiB  ({', '.join(requirements)} and dependencies)")
        print(f"  ONNX Runtime / MXNet: {sizes['onnxruntime'] / sizes['mxnet']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
