"""Inference benchmark on the full-size SSD512 graph: our handler vs raw forward vs the seed's Lambda.

The model is the seed's deployable ResNet-50 SSD512 symbol with random weights of
the right shapes, saved like the SageMaker artefact (random weights time like
trained ones). Three ways to process the seed's two 1080p frames are timed in
interleaved rounds, so background load hits all of them alike:

- raw forward: the bound executor's forward pass plus reading the output back,
  on an already preprocessed frame (the floor any handler pays);
- handler: ``InferenceService.handle`` (event -> decode -> preprocess -> forward ->
  all detections -> JSON -> publish callable), what the Greengrass Lambda runs;
- seed: a faithful re-implementation of the blog's ``model_loader.MLModel``
  ``predict_from_file`` and ``main.lambda_handler`` (marked as such below).

Prints medians per image and the ratios.

    python bench/inference_ssd512.py [--runs 10] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections import namedtuple
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "files" / "inference_lambda")]

import cv2  # noqa: E402
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
import object_detector as od  # noqa: E402

from tests.inference import seed_model  # noqa: E402

# ---- The seed's Lambda, re-implemented faithfully for comparison (not project code) ----------------
SeedBatch = namedtuple("SeedBatch", ["data"])
SEED_INPUT = 512


def seed_get_ctx():
    try:
        gpus = mx.test_utils.list_gpus()
        return [mx.gpu(gpu) for gpu in gpus] if len(gpus) > 0 else [mx.cpu()]
    except Exception:  # noqa: BLE001 - as the seed does
        return [mx.cpu()]


class SeedMLModel:
    """The blog's model_loader.MLModel: Module bound for data (1,3,512,512)."""

    def __init__(self, param_path):
        context = seed_get_ctx()[0]
        sym, arg_params, aux_params = mx.model.load_checkpoint(param_path, 0)
        self.mod = mx.mod.Module(symbol=sym, label_names=[], context=context)
        self.mod.bind(for_training=False, data_shapes=[("data", (1, 3, SEED_INPUT, SEED_INPUT))])
        self.mod.set_params(arg_params, aux_params)

    def predict_from_file(self, filepath, reshape=(SEED_INPUT, SEED_INPUT)):
        img = cv2.cvtColor(cv2.imread(filepath), cv2.COLOR_BGR2RGB)  # the seed's order: crashes on None
        if img is None:
            return []
        img = cv2.resize(img, reshape)
        img = np.swapaxes(img, 0, 2)
        img = np.swapaxes(img, 1, 2)
        img = img[np.newaxis, :]
        self.mod.forward(SeedBatch([mx.nd.array(img)]))
        prob = self.mod.get_outputs()[0].asnumpy()
        prob = np.squeeze(prob)
        return [prob[0].tolist()]  # only the first row


def seed_lambda_handler(model, publish, event):
    """The blog's main.lambda_handler, with its module-level client passed in."""
    filepath = event["filepath"]
    if not os.path.exists(filepath):
        return None
    prediction = model.predict_from_file(filepath)
    response = {"prediction": prediction, "timestamp": time.time(), "filepath": filepath}
    publish(topic="blog/infer/output", payload=json.dumps(response))
    return response


# ---- Benchmark -----------------------------------------------------------------------------------


def ensure_model(directory: Path) -> Path:
    prefix = directory / seed_model.SEED_PREFIX_NAME
    if not Path(f"{prefix}-0000.params").is_file():
        print(f"exporting the seed SSD512 graph with random weights to {directory} (~110 MB, once)")
        seed_model.export_seed_with_random_weights(directory)
    return prefix


def median_ms(samples):
    return statistics.median(samples) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="timed rounds per image and method (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    cache = Path(os.environ.get("EDGEML_CACHE", Path.home() / ".cache" / "edgeml"))
    parser.add_argument("--model-dir", type=Path, default=cache / "bench" / "seed-ssd512-random")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not seed_model.seed_files_present():
        print(f"seed graph/images not found in {seed_model.SEED_MODEL_DIR}; set EDGEML_SEED_MODEL_DIR", file=sys.stderr)
        return 2

    prefix = ensure_model(args.model_dir)
    images = [str(path) for path in seed_model.seed_images()]
    load_before = os.getloadavg()

    service = od.InferenceService(
        lambda topic, payload: None, lambda: od.DetectorConfig(model_path=str(prefix), backend="mxnet")
    )
    detector = service.detector()
    seed = SeedMLModel(str(prefix))
    batches = {image: detector.preprocess(od.read_image(image)) for image in images}

    def raw_forward(image):
        detector.forward(batches[image])

    def handler(image):
        payload = service.handle({"image_path": image})
        assert "error" not in payload, payload
        stages.setdefault(image, []).append(payload["timing_ms"])

    def seed_handler(image):
        seed_lambda_handler(seed, lambda topic, payload: None, {"filepath": image})

    methods = {"raw forward": raw_forward, "handler (ours)": handler, "seed predict_from_file": seed_handler}
    samples = {(name, image): [] for name in methods for image in images}
    stages = {}
    for round_number in range(args.warmup + args.runs):
        for image in images:
            for name, method in methods.items():
                started = time.perf_counter()
                method(image)
                elapsed = time.perf_counter() - started
                if round_number >= args.warmup:
                    samples[(name, image)].append(elapsed)
    load_after = os.getloadavg()

    print(f"model: {prefix} (seed ResNet-50 SSD512 graph, random weights), inference {dict(detector.inference)}")
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"mxnet {mx.__version__}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={threads}")
    print(f"load average 1/5/15 min: before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, ", end="")
    print(f"after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}")
    print(f"medians of {args.runs} runs per image after {args.warmup} warm-up rounds, interleaved\n")
    header = f"{'image':<26} {'method':<24} {'median ms':>10} {'img/s':>7} {'vs raw fwd':>10}"
    print(header)
    print("-" * len(header))
    for image in images:
        raw = median_ms(samples[("raw forward", image)])
        for name in methods:
            value = median_ms(samples[(name, image)])
            print(f"{Path(image).name:<26} {name:<24} {value:>10.1f} {1000.0 / value:>7.2f} {value / raw:>10.3f}")
    print()
    print("handler stage medians (ms, from its own timing_ms):")
    for image in images:
        keys = ("decode_ms", "preprocess_ms", "forward_ms", "postprocess_ms", "total_ms")
        timed = stages[image][args.warmup :]
        parts = ", ".join(f"{key[:-3]} {statistics.median(t[key] for t in timed):.1f}" for key in keys)
        print(f"  {Path(image).name}: {parts}")
    print()
    all_raw = [s for image in images for s in samples[("raw forward", image)]]
    all_ours = [s for image in images for s in samples[("handler (ours)", image)]]
    all_seed = [s for image in images for s in samples[("seed predict_from_file", image)]]
    ratio = median_ms(all_ours) / median_ms(all_raw)
    print(f"handler / raw forward (median over both images): {ratio:.3f}  (target <= 1.05)")
    # The same ratio within each handler call (its total vs its own forward): immune to load shifting between calls.
    per_call = [t["total_ms"] / t["forward_ms"] for image in images for t in stages[image][args.warmup :]]
    print(f"handler total / its own forward, median per call: {statistics.median(per_call):.3f}")
    print(f"images per second: handler {1000.0 / median_ms(all_ours):.2f}, seed {1000.0 / median_ms(all_seed):.2f}")
    print(f"handler / seed time: {median_ms(all_ours) / median_ms(all_seed):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
