"""Video benchmark on the full-size SSD512 graph: the pipeline vs raw forward vs the seed's serial loop.

The model is the seed's ResNet-50 SSD512 symbol with random weights (``tests/inference/seed_model.py``;
random weights time like trained ones). The stream is an MJPG .avi of 1080p frames made from the seed's
two 1080p pictures, alternating and shifting a little each frame. Measured in one run:

1. raw forward: the bound executor's forward pass on a preprocessed frame (the floor);
2. single-frame latency: ``VideoPipeline`` paced slowly enough that the detector is idle when each frame
   arrives; ``latency_ms`` (decoded frame in memory -> publish call) over the raw forward pass timed right
   before and after the run, and over the same frame's own forward time (immune to load that shifts
   between measurements); next to it the seed's way per frame, re-implemented faithfully
   (``bench/inference_ssd512.py``'s ``SeedMLModel`` / ``seed_lambda_handler``: write the frame as JPEG,
   ``predict_from_file`` = imread, cvtColor, resize, forward), timed from the decoded frame to its publish,
   over a raw forward pass timed just before each frame;
3. stream throughput: the pipeline fed faster than it can detect (late frames dropped, oldest first),
   frames published per second x raw forward time, with the capture and preprocess threads at a lower
   priority (the default) and not; next to it the seed's serial loop over the same video (decode, write
   JPEG, predict_from_file, one frame after another);
4. memory: RSS of this process while ``VideoPipeline`` runs a 1,000-frame 1080p stream (the short video
   looped) through the *small* SSD (``tests/inference/small_ssd.py``), sampled at frames 100 and 1,000.

    python bench/video_ssd512.py [--frames 40] [--latency-frames 12] [--memory-frames 1000] [--backend onnxruntime]

Load averages are printed before and after: the machine's other users compete for the same cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "files" / "inference_lambda"), str(REPO_ROOT / "bench")]

import cv2  # noqa: E402
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
import object_detector as od  # noqa: E402
import video_pipeline as vp  # noqa: E402
from inference_ssd512 import SeedMLModel, ensure_model, seed_lambda_handler  # noqa: E402

from tests.inference import seed_model, small_ssd  # noqa: E402

SIZE = (1920, 1080)


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def make_video(path: Path, frames: int) -> Path:
    """1080p MJPG .avi: the seed's two frames alternating, shifted 16 px more each frame."""
    pictures = [cv2.resize(cv2.imread(str(p)), SIZE) for p in seed_model.seed_images()]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, SIZE)
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {path}")
    for index in range(frames):
        writer.write(np.roll(pictures[index % 2], 16 * index, axis=1))
    writer.release()
    return path


class Collector:
    def __init__(self, on_result=None):
        self.results = []
        self.errors = []
        self.on_result = on_result

    def __call__(self, topic, payload):
        message = json.loads(payload)
        if "error" in message:
            self.errors.append(message)
            return
        message["published_clock"] = time.monotonic()
        self.results.append(message)
        if self.on_result:
            self.on_result(message)


def run_pipeline(settings, detector, on_result=None):
    collector = Collector(on_result)
    pipeline = vp.VideoPipeline(settings, collector, detector_factory=lambda: detector)
    stats = pipeline.run()
    if collector.errors:
        raise SystemExit(f"pipeline errors: {collector.errors[:3]}")
    return stats, collector.results


def median(values):
    return statistics.median(values)


def raw_forward_ms(detector, batch, runs):
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        detector.forward(batch)
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def seed_serial(seed, video: Path, frames: int, scratch: Path, detector=None, batch=None):
    """The seed's way on a stream: each decoded frame written as JPEG, then predict_from_file on its path.

    Returns per-frame ms (decoded frame -> published), the loop's frames per second including decode, and,
    when a detector is given, per frame the ratio to a raw forward pass timed just before it (load that
    shifts during the run then hits both sides alike; the loop's rate is not meaningful in that mode).
    """
    capture = cv2.VideoCapture(str(video))
    path = str(scratch / "seed-frame.jpg")
    per_frame, ratios = [], []
    started = time.perf_counter()
    count = 0
    while count < frames:
        ok, image = capture.read()
        if not ok:
            break
        raw = raw_forward_ms(detector, batch, 1)[0] if detector is not None else None
        decoded = time.perf_counter()
        cv2.imwrite(path, image)
        seed_lambda_handler(seed, lambda topic, payload: None, {"filepath": path})
        per_frame.append((time.perf_counter() - decoded) * 1000.0)
        if raw is not None:
            ratios.append(per_frame[-1] / raw)
        count += 1
    elapsed = time.perf_counter() - started
    capture.release()
    return per_frame, count / elapsed, ratios


def raw_forward_after_idle_ms(detector, batch, runs, idle_s):
    """Raw forward passes each after ``idle_s`` without work: the floor for a frame reaching an idle detector."""
    samples = []
    for _ in range(runs):
        time.sleep(idle_s)
        samples += raw_forward_ms(detector, batch, 1)
    return samples


def with_raw_forward(detector, batch, run, rounds=4):
    """``run()``'s result and the median raw forward pass of ``rounds`` calls right before and after it."""
    before = raw_forward_ms(detector, batch, rounds)
    result = run()
    after = raw_forward_ms(detector, batch, rounds)
    return result, median(before + after)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, default=40, help="frames processed per throughput run (default 40)")
    parser.add_argument("--latency-frames", type=int, default=12, help="frames in the latency runs (default 12)")
    parser.add_argument("--memory-frames", type=int, default=1000, help="frames in the memory run (default 1000)")
    cache = Path(os.environ.get("EDGEML_CACHE", Path.home() / ".cache" / "edgeml"))
    parser.add_argument("--model-dir", type=Path, default=cache / "bench" / "seed-ssd512-random")
    parser.add_argument(
        "--backend",
        choices=["mxnet", "onnxruntime"],
        default="mxnet",
        help="the pipeline's detector backend (default mxnet; the seed's loop runs MXNet either way)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not seed_model.seed_files_present():
        print(f"seed graph/images not found in {seed_model.SEED_MODEL_DIR}", file=sys.stderr)
        return 2

    prefix = ensure_model(args.model_dir)
    scratch = Path(tempfile.mkdtemp(prefix="video-bench-"))
    video = make_video(scratch / "seed-1080p.avi", 41)
    load_before = os.getloadavg()

    detector_prefix = prefix
    if args.backend == "onnxruntime":
        from inference_backends import ensure_models

        detector_prefix = ensure_models(args.model_dir.parent)["onnxruntime"]
    detector = od.ObjectDetector(od.DetectorConfig(model_path=str(detector_prefix), backend=args.backend))
    seed = SeedMLModel(str(prefix))
    first = cv2.VideoCapture(str(video)).read()[1]
    batch = detector.preprocess(first)
    raw_forward_ms(detector, batch, 3)  # warm-up: MKLDNN primitives are made on the first passes
    seed.predict_from_file(str(seed_model.seed_images()[0]))
    raw_before = raw_forward_ms(detector, batch, 8)
    planned_ms = median(raw_before)

    # 2. single-frame latency: paced at a rate the detector finishes well within.
    slow_rate = 1000.0 / (planned_ms * 2.5)
    latency_settings = vp.CaptureSettings(str(video), rate=slow_rate, max_frames=args.latency_frames)
    (latency_stats, latency_results), latency_raw = with_raw_forward(
        detector, batch, lambda: run_pipeline(latency_settings, detector)
    )
    seed_latency, _, seed_ratios = seed_serial(seed, video, args.latency_frames, scratch, detector, batch)
    # The pipeline's frames reach a detector that has been idle since the last one; so do these.
    idle_raw = median(raw_forward_after_idle_ms(detector, batch, 6, 1.0 / slow_rate - planned_ms / 1000.0))

    # 3. throughput: fed a little faster than the detector goes, and at a camera's 30 fps.
    fast_rate = 1000.0 / (planned_ms * 0.8)
    throughput = {}
    runs = [
        ("at {:.1f} fps, stages nice +10".format(fast_rate), fast_rate, 10),
        ("at 30 fps, stages nice +10", 30.0, 10),
        ("at 30 fps, stages nice 0", 30.0, 0),
    ]
    for label, rate, nice in runs:
        # Enough captured frames (the video looped) for about args.frames to be processed at any rate.
        captured = int(args.frames * max(1.0, rate * planned_ms / 1000.0))
        settings = vp.CaptureSettings(str(video), rate=rate, loop=True, max_frames=captured, stage_nice=nice)
        (stats, results), raw = with_raw_forward(detector, batch, lambda s=settings: run_pipeline(s, detector))
        clocks = [r["published_clock"] for r in results]
        fps = (len(clocks) - 1) / (clocks[-1] - clocks[0])
        # The forward passes inside the measured interval (first publish to last): fps x their mean is the
        # share of that interval the forward pass was running, whatever the load did to its speed.
        forwards = [r["timing_ms"]["forward_ms"] for r in results[1:]]
        throughput[label] = (stats, fps, statistics.mean(forwards), raw)
    (seed_frames, seed_fps, _), seed_raw = with_raw_forward(
        detector, batch, lambda: seed_serial(seed, video, args.frames, scratch)
    )
    load_after_ssd = os.getloadavg()

    # 4. memory over a long stream, small SSD, 1080p frames, the video looped.
    small = od.ObjectDetector(
        od.DetectorConfig(model_path=str(small_ssd.export_small_ssd(scratch / "small")), class_labels=["b", "y"])
    )
    samples = {}

    def sample_memory(message):
        index = message["frame_index"]
        for mark in (100, args.memory_frames - 1):
            if index >= mark and mark not in samples:
                samples[mark] = (index, *rss_kib())

    memory_settings = vp.CaptureSettings(str(video), rate=0, loop=True, max_frames=args.memory_frames)
    memory_stats, _ = run_pipeline(memory_settings, small, on_result=sample_memory)
    load_after = os.getloadavg()

    print(f"model: {prefix} (seed ResNet-50 SSD512 graph, random weights), inference {dict(detector.inference)}")
    print(f"mxnet {mx.__version__}, opencv {cv2.__version__}, {os.cpu_count()} CPUs")
    print(f"stream: {video.name}, {SIZE[0]}x{SIZE[1]} MJPG, 41 frames (looped where needed)")
    print(
        "load average 1/5/15 min: before {:.2f}/{:.2f}/{:.2f}, after the SSD512 runs {:.2f}/{:.2f}/{:.2f}, "
        "at the end {:.2f}/{:.2f}/{:.2f}".format(*load_before, *load_after_ssd, *load_after)
    )
    print(f"raw forward at the start: median {planned_ms:.1f} ms")
    print()
    latencies = [r["latency_ms"] for r in latency_results]
    own = [r["latency_ms"] / r["timing_ms"]["forward_ms"] for r in latency_results]
    print(
        f"single frame, pipeline paced at {slow_rate:.2f} fps ({latency_stats['frames_processed']} frames, "
        f"{latency_stats['frames_dropped']} dropped), raw forward around the run {latency_raw:.1f} ms:"
    )
    print(
        f"  latency median {median(latencies):.1f} ms; / raw forward {median(latencies) / latency_raw:.3f} "
        f"(target <= 1.02); / its own forward, median per frame {median(own):.3f}"
    )
    print(
        f"  raw forward after the same idle time as the pipeline's frames: {idle_raw:.1f} ms; latency / it "
        f"{median(latencies) / idle_raw:.3f}"
    )
    stages = {key: median(r["timing_ms"][key] for r in latency_results) for key in latency_results[0]["timing_ms"]}
    print("  stage medians ms: " + ", ".join(f"{key[:-3]} {value:.2f}" for key, value in stages.items()))
    print(
        f"  seed write JPEG + predict_from_file: median {median(seed_latency):.1f} ms; / raw forward timed just "
        f"before each frame, median per frame {median(seed_ratios):.3f}"
    )
    print()
    print(f"stream throughput (about {args.frames} frames processed per run):")
    for label, (stats, fps, forward, raw) in throughput.items():
        print(
            f"  pipeline fed {label}: {fps:.3f} frames/s; x raw forward around the run ({raw:.1f} ms) "
            f"{fps * raw / 1000.0:.3f} (target >= 0.98); x its own forward passes' mean ({forward:.1f} ms) "
            f"{fps * forward / 1000.0:.3f}; captured {stats['frames_captured']}, processed "
            f"{stats['frames_processed']}, dropped {stats['frames_dropped']}, queue high water "
            f"{dict(stats['queue_high_water'])}"
        )
    print(
        f"  seed serial loop (decode, write JPEG, predict_from_file): {seed_fps:.3f} frames/s; x raw forward "
        f"around the run ({seed_raw:.1f} ms) {seed_fps * seed_raw / 1000.0:.3f}; per frame median "
        f"{median(seed_frames):.1f} ms"
    )
    print()
    print(
        f"memory, small SSD on the looped 1080p stream, {memory_stats['frames_captured']} frames captured, "
        f"{memory_stats['frames_processed']} processed, {memory_stats['frames_dropped']} dropped "
        "(the process also holds the SSD512 graph and the seed's copy of it):"
    )
    for _mark, (index, rss, hwm) in sorted(samples.items()):
        print(f"  at frame {index}: RSS {rss / 1024:.1f} MiB, peak RSS so far {hwm / 1024:.1f} MiB")
    if len(samples) == 2:
        (_, early, _), (_, late, _) = (samples[k] for k in sorted(samples))
        print(f"  RSS growth frame 100 -> end: {(late - early) / 1024:+.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
