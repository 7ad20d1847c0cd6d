#!/usr/bin/env python3
"""Check an ONNX Runtime + OpenCV + numpy runtime with one forward pass of a small SSD converted to ONNX.

Loads ``ssd_check.onnx`` (beside this script: the MXNet check's small SSD, random weights, converted by the
collection's ssd_model_onnx module exactly as a SageMaker model is) on the execution providers the detector
would use (TensorRT, CUDA, OpenVINO, CPU: the first this build offers; ``--context cpu`` for the CPU alone),
prepares a synthetic frame with OpenCV, runs one forward pass and prints one JSON line: library versions, the
providers, the output shapes and whether they are what the detector reads (class probabilities summing to 1 over
the classes, box offsets and anchors for as many anchors). Exits 1 when they are not. The weights are random:
the check proves the runtime, not the model.
"""

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
import onnxruntime

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
OUTPUTS = ["class_probabilities", "box_offsets", "anchors"]


def synthetic_frame(size):
    frame = np.zeros((720, 1280, 3), dtype=np.uint8)
    cv2.rectangle(frame, (400, 200), (800, 600), (0, 200, 255), thickness=-1)
    rgb = cv2.cvtColor(cv2.resize(frame, (size, size)), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ssd_check.onnx"))
    parser.add_argument("--context", choices=["auto", "cpu", "gpu"], default="auto")
    options = parser.parse_args()

    available = onnxruntime.get_available_providers()
    providers = [name for name in PREFERENCE if name in available]
    if options.context == "cpu":
        providers = ["CPUExecutionProvider"]
    elif options.context == "gpu":
        providers = [name for name in providers if name in GPU_PROVIDERS] + ["CPUExecutionProvider"]
    session_options = onnxruntime.SessionOptions()
    session_options.log_severity_level = 3
    session = onnxruntime.InferenceSession(options.model, sess_options=session_options, providers=providers)
    size = session.get_inputs()[0].shape[-1]
    batch = synthetic_frame(size)
    started = time.perf_counter()
    outputs = session.run(OUTPUTS, {"data": batch})
    forward_ms = (time.perf_counter() - started) * 1000
    probabilities, offsets, anchors = outputs
    count = anchors.shape[1] if anchors.ndim == 3 else -1
    rows_valid = bool(
        [output.name for output in session.get_outputs()] == OUTPUTS
        and probabilities.ndim == 3
        and probabilities.shape[0] == 1
        and probabilities.shape[2] == count > 0
        and offsets.shape == (1, count * 4)
        and all(np.isfinite(output).all() for output in outputs)
        and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    )
    used = session.get_providers()
    report = {
        "runtime": "onnxruntime",
        "version": onnxruntime.__version__,
        "numpy": np.__version__,
        "cv2": cv2.__version__,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "providers": used,
        "available_providers": available,
        "gpu": used[0] in GPU_PROVIDERS,
        "device": used[0],
        "output_shapes": [list(output.shape) for output in outputs],
        "rows_valid": rows_valid,
        "forward_ms": round(forward_ms, 1),
    }
    print(json.dumps(report, sort_keys=True))
    return 0 if rows_valid else 1


if __name__ == "__main__":
    sys.exit(main())
