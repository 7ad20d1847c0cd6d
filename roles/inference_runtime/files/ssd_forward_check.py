#!/usr/bin/env python3
"""Check an MXNet + OpenCV + numpy runtime with one forward pass of a small SSD-shaped model.

Builds a tiny single-shot detector from MXNet symbols (conv features ->
contrib.MultiBoxPrior anchors + softmax class scores + box offsets ->
contrib.MultiBoxDetection), saves it with mx.model.save_checkpoint and loads it
back with mx.model.load_checkpoint (the way a SageMaker "deploy_model_algo_1"
artefact is loaded), prepares a synthetic frame with OpenCV, runs one forward
pass and prints one JSON line: library versions, the context used, the output
shape ([1, N, 6] rows of [class_id, score, xmin, ymin, xmax, ymax]) and whether
every row is well formed. Exits 1 when the output is not what an SSD returns.
Weights are random: the check proves the runtime, not the model.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import cv2
import mxnet as mx
import numpy as np

NUM_CLASSES = 3
ANCHOR_SIZES = ([0.2, 0.3], [0.5, 0.7])
ANCHOR_RATIOS = [1.0, 2.0, 0.5]


def conv(data, name, filters, stride):
    out = mx.sym.Convolution(data, num_filter=filters, kernel=(3, 3), stride=(stride, stride), pad=(1, 1), name=name)
    return mx.sym.Activation(out, act_type="relu", name=name + "_relu")


def build_ssd():
    data = mx.sym.var("data")
    body = conv(conv(data, "stem1", 8, 2), "stem2", 16, 2)
    features = [conv(body, "feat1", 16, 2), None]
    features[1] = conv(features[0], "feat2", 16, 2)
    anchors_per_cell = len(ANCHOR_SIZES[0]) + len(ANCHOR_RATIOS) - 1
    anchors, class_preds, box_preds = [], [], []
    for index, feature in enumerate(features):
        anchors.append(
            mx.sym.contrib.MultiBoxPrior(
                feature, sizes=ANCHOR_SIZES[index], ratios=ANCHOR_RATIOS, clip=True, name=f"anchors{index}"
            )
        )
        cls = mx.sym.Convolution(
            feature, num_filter=anchors_per_cell * (NUM_CLASSES + 1), kernel=(3, 3), pad=(1, 1), name=f"cls{index}"
        )
        class_preds.append(mx.sym.flatten(mx.sym.transpose(cls, axes=(0, 2, 3, 1))))
        box = mx.sym.Convolution(
            feature, num_filter=anchors_per_cell * 4, kernel=(3, 3), pad=(1, 1), name=f"box{index}"
        )
        box_preds.append(mx.sym.flatten(mx.sym.transpose(box, axes=(0, 2, 3, 1))))
    anchor = mx.sym.reshape(mx.sym.concat(*anchors, dim=1), shape=(0, -1, 4), name="anchors")
    cls_pred = mx.sym.reshape(mx.sym.concat(*class_preds, dim=1), shape=(0, -1, NUM_CLASSES + 1))
    cls_prob = mx.sym.softmax(mx.sym.transpose(cls_pred, axes=(0, 2, 1)), axis=1, name="cls_prob")
    box_pred = mx.sym.concat(*box_preds, dim=1, name="box_pred")
    return mx.sym.contrib.MultiBoxDetection(cls_prob, box_pred, anchor, nms_threshold=0.45, name="detection")


def random_params(symbol, size):
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, size, size))
    rng = np.random.default_rng(7)
    args = {
        name: mx.nd.array(rng.normal(0, 0.05, shape).astype("float32"))
        for name, shape in zip(symbol.list_arguments(), arg_shapes)
        if name != "data"
    }
    aux = {name: mx.nd.zeros(shape) for name, shape in zip(symbol.list_auxiliary_states(), aux_shapes)}
    return args, aux


def synthetic_frame(size):
    frame = np.zeros((720, 1280, 3), dtype=np.uint8)
    cv2.rectangle(frame, (400, 200), (800, 600), (0, 200, 255), thickness=-1)
    rgb = cv2.cvtColor(cv2.resize(frame, (size, size)), cv2.COLOR_BGR2RGB)
    return mx.nd.array(rgb.transpose(2, 0, 1)[np.newaxis].astype("float32"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="input width and height")
    parser.add_argument("--context", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument(
        "--export-checkpoint",
        metavar="PREFIX",
        help="only save the model as <PREFIX>-symbol.json/-0000.params (the ONNX check's model is converted from it)",
    )
    options = parser.parse_args()
    if options.export_checkpoint:
        symbol = build_ssd()
        args, aux = random_params(symbol, options.size)
        mx.model.save_checkpoint(options.export_checkpoint, 0, symbol, args, aux)
        return 0

    gpus = mx.context.num_gpus()
    use_gpu = options.context == "gpu" or (options.context == "auto" and gpus > 0)
    context = mx.gpu(0) if use_gpu else mx.cpu()

    with tempfile.TemporaryDirectory() as workdir:
        prefix = os.path.join(workdir, "deploy_model_algo_1")
        symbol = build_ssd()
        args, aux = random_params(symbol, options.size)
        mx.model.save_checkpoint(prefix, 0, symbol, args, aux)
        symbol, args, aux = mx.model.load_checkpoint(prefix, 0)

    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=context)
    module.bind(data_shapes=[("data", (1, 3, options.size, options.size))], for_training=False)
    module.set_params(args, aux)
    batch = mx.io.DataBatch([synthetic_frame(options.size)])
    started = time.perf_counter()
    module.forward(batch, is_train=False)
    output = module.get_outputs()[0].asnumpy()
    forward_ms = (time.perf_counter() - started) * 1000

    shape = list(output.shape)
    rows = output.reshape(-1, 6) if output.size else np.zeros((0, 6))
    kept = rows[rows[:, 0] >= 0]
    rows_valid = bool(
        len(shape) == 3
        and shape[0] == 1
        and shape[2] == 6
        and shape[1] > 0
        and np.all((rows[:, 0] >= -1) & (rows[:, 0] < NUM_CLASSES))
        and np.all((kept[:, 1] >= 0) & (kept[:, 1] <= 1))
    )
    report = {
        "runtime": "mxnet",
        "version": mx.__version__,
        "gpu": context.device_type == "gpu",
        "device": str(context),
        "mxnet": mx.__version__,
        "numpy": np.__version__,
        "cv2": cv2.__version__,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "context": str(context),
        "gpus": gpus,
        "output_name": symbol.list_outputs()[0],
        "output_shape": shape,
        "detections": int(len(kept)),
        "rows_valid": rows_valid,
        "forward_ms": round(forward_ms, 1),
    }
    print(json.dumps(report, sort_keys=True))
    return 0 if rows_valid else 1


if __name__ == "__main__":
    sys.exit(main())
