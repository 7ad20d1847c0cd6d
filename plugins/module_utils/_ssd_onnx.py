# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Private helpers of the ssd_model_onnx module: a SageMaker SSD (MXNet) checkpoint to ONNX, and its check.

MXNet's own ONNX exporter (``mxnet.onnx``) cannot convert the SSD head (``SoftmaxActivation``,
``_contrib_MultiBoxPrior``, ``_contrib_MultiBoxDetection``; ../shared/field-notes.md). So:

- the network is exported up to the inputs of ``MultiBoxDetection``: the class scores before their softmax and
  the box offsets, with MXNet's exporter at opset 13, weights as initializers (ONNX Runtime folds BatchNorm only
  into constants); the softmax over classes is added as an ONNX ``Softmax``;
- the anchors depend on the input size only: computed once with MXNet and stored as a constant output;
- ``MultiBoxDetection``'s settings (threshold, clip, variances, NMS threshold, force_suppress, top-k) go into
  the model's metadata; the detector decodes and suppresses in numpy as MXNet does.

``verify`` runs the checkpoint on MXNet and the ONNX model on ONNX Runtime on the same images and decodes the
ONNX outputs with MXNet's own ``MultiBoxDetection``, so the detections are compared with one reference decoder.

Only the controller imports mxnet, onnx, onnxruntime and OpenCV, and only inside the functions.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import io
import json
import sys
import types

OPSET = 13
INPUT_NAME = "data"
OUTPUTS = ("class_probabilities", "box_offsets", "anchors")
DETECTION_METADATA = "edgeml.multibox_detection"
SOURCE_METADATA = "edgeml.source_sha256"
# MultiBoxDetection's defaults (src/operator/contrib/multibox_detection-inl.h, MXNet 1.9.1).
DETECTION_DEFAULTS = {
    "threshold": 0.01,
    "clip": True,
    "variances": [0.1, 0.1, 0.2, 0.2],
    "nms_threshold": 0.5,
    "force_suppress": False,
    "nms_topk": -1,
}
PRODUCER = "edgeml.greengrass.ssd_model_onnx"
# Bumped when the conversion's output changes for the same input, so converted files are made again.
CONVERTER_VERSION = "1"


class ConversionError(Exception):
    """The checkpoint cannot be converted or does not verify; the message says which part and why."""


def _onnx_mapping_shim():
    """mxnet.onnx (1.9.1) imports onnx.mapping, which current onnx removed; give it the two tables it reads."""
    import numpy as np
    import onnx
    from onnx import helper

    if hasattr(onnx, "mapping") or "onnx.mapping" in sys.modules:
        return
    mapping = types.ModuleType("onnx.mapping")
    dtypes = (np.float32, np.float16, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_)
    mapping.NP_TYPE_TO_TENSOR_TYPE = dict((np.dtype(t), helper.np_dtype_to_tensor_dtype(np.dtype(t))) for t in dtypes)
    mapping.TENSOR_TYPE_TO_NP_TYPE = dict((v, k) for k, v in mapping.NP_TYPE_TO_TENSOR_TYPE.items())
    onnx.mapping = mapping
    sys.modules["onnx.mapping"] = mapping


def _attribute(text, kind):
    """A MultiBoxDetection attribute as MXNet writes it in the symbol JSON ('True', '0.45', '(0.1, 0.1)')."""
    text = str(text).strip()
    if kind is bool:
        return text.lower() in ("true", "1")
    if kind is list:
        return [float(part) for part in text.strip("()[]").split(",") if part.strip()]
    return kind(float(text)) if kind is int else kind(text)


def detection_settings(attributes):
    """MultiBoxDetection's settings, its defaults completed with the node's attributes."""
    settings = dict(DETECTION_DEFAULTS)
    for key, default in DETECTION_DEFAULTS.items():
        if key in (attributes or {}):
            settings[key] = _attribute(attributes[key], type(default))
    return settings


def _graph_head(symbol_json):
    """(nodes, the MultiBoxDetection node) of a SageMaker SSD deploy graph, or ConversionError naming the layer."""
    graph = json.loads(symbol_json)
    nodes = graph["nodes"]
    heads = graph.get("heads") or []
    if len(heads) != 1:
        raise ConversionError("the graph has {} outputs; an SSD deploy graph has one (detection)".format(len(heads)))
    head = nodes[heads[0][0]]
    if head["op"] != "_contrib_MultiBoxDetection":
        raise ConversionError(
            "the graph's output is layer '{}' ({}); expected _contrib_MultiBoxDetection, as a SageMaker SSD deploy "
            "artefact ends".format(head["name"], head["op"])
        )
    return nodes, head


def _output_name(nodes, entry):
    node = nodes[entry[0]]
    return node["name"] + "_output" if node["op"] != "null" else node["name"]


def load_checkpoint(prefix, epoch):
    """(symbol, arg_params, aux_params), or ConversionError saying why MXNet cannot load them (its first line)."""
    import mxnet as mx

    try:
        return mx.model.load_checkpoint(prefix, epoch)
    except Exception as error:  # noqa: BLE001 - MXNetError, ValueError, OSError...: each is "cannot load"
        first = str(error).strip().splitlines()
        reason = next((line for line in first if "Check failed" in line or "Error" in line), first[0] if first else "")
        raise ConversionError(
            "cannot load the checkpoint {}-symbol.json / -{:04d}.params with MXNet ({}: {})".format(
                prefix.rsplit("/", 1)[-1], epoch, type(error).__name__, reason.strip()
            )
        ) from error


def convert(checkpoint, input_size):
    """ONNX bytes of a checkpoint (``load_checkpoint``'s symbol and parameters) for a square input, and a
    description of what was converted. Same files and size: same bytes."""
    import mxnet as mx
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _onnx_mapping_shim()
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    symbol, arg_params, aux_params = checkpoint
    symbol_json = symbol.tojson()
    nodes, head = _graph_head(symbol_json)
    settings = detection_settings(head.get("attrs") or head.get("param") or head.get("attr"))
    class_entry, box_entry, anchor_entry = head["inputs"][:3]
    softmax = nodes[class_entry[0]]
    softmax_attrs = softmax.get("attrs") or {}
    if softmax["op"] == "SoftmaxActivation" and softmax_attrs.get("mode") == "channel":
        logits_entry = softmax["inputs"][0]
    elif softmax["op"] == "softmax" and str(softmax_attrs.get("axis", "-1")) == "1":
        logits_entry = softmax["inputs"][0]
    else:
        raise ConversionError(
            "layer '{}' ({} {}) feeds the class probabilities; the converter knows SoftmaxActivation(mode=channel) "
            "and softmax(axis=1)".format(softmax["name"], softmax["op"], softmax_attrs)
        )
    internals = symbol.get_internals()
    logits = internals[_output_name(nodes, logits_entry)]
    boxes = internals[_output_name(nodes, box_entry)]
    anchors_symbol = internals[_output_name(nodes, anchor_entry)]
    shape = (1, 3, input_size, input_size)

    # The anchors depend only on the feature maps' shapes, not on any value: one MXNet pass on zeros.
    executor = anchors_symbol.simple_bind(mx.cpu(), grad_req="null", **{INPUT_NAME: shape})
    executor.forward(is_train=False)
    anchors = executor.outputs[0].asnumpy().reshape(-1, 4).astype(np.float32)

    params = dict(arg_params)
    params.update(aux_params)
    try:
        graph = MXNetGraph().create_onnx_graph_proto(
            mx.sym.Group([logits, boxes]), params, [shape], [TensorProto.FLOAT], opset_version=OPSET
        )
    except AttributeError as error:  # "No conversion function registered for op type X yet."
        op = str(error).rsplit("op type ", 1)[-1].split(" yet", 1)[0]
        layers = [node["name"] for node in nodes if node["op"] == op][:5]
        raise ConversionError(
            "layer(s) {} of type {} have no ONNX conversion ({})".format(layers, op, error)
        ) from error
    logits_out, boxes_out = list(graph.output)
    initialised = set(initializer.name for initializer in graph.initializer)
    inputs = [graph_input.name for graph_input in graph.input if graph_input.name not in initialised]
    if inputs != [INPUT_NAME]:
        raise ConversionError("the network's inputs are {}; expected one, '{}'".format(inputs, INPUT_NAME))
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, list(shape))])
    graph.initializer.extend([numpy_helper.from_array(anchors.reshape(1, -1, 4), "anchor_boxes")])
    graph.node.extend(
        [
            helper.make_node("Softmax", [logits_out.name], [OUTPUTS[0]], name="class_softmax", axis=1),
            helper.make_node("Identity", [boxes_out.name], [OUTPUTS[1]], name="box_offsets_out"),
            helper.make_node("Identity", ["anchor_boxes"], [OUTPUTS[2]], name="anchors_out"),
        ]
    )
    output_shapes = mx.sym.Group([logits, boxes]).infer_shape(**{INPUT_NAME: shape})[1]
    class_shape, box_shape = list(output_shapes[0]), list(output_shapes[1])
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(OUTPUTS[0], TensorProto.FLOAT, class_shape),
            helper.make_tensor_value_info(OUTPUTS[1], TensorProto.FLOAT, box_shape),
            helper.make_tensor_value_info(OUTPUTS[2], TensorProto.FLOAT, [1, anchors.shape[0], 4]),
        ]
    )
    graph.name = "ssd"
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version=CONVERTER_VERSION,
    )
    model.ir_version = 8  # what opset 13 needs; older ONNX Runtime builds (Python 3.8/3.9 devices) read it
    helper.set_model_props(model, {DETECTION_METADATA: json.dumps(settings, sort_keys=True)})
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise ConversionError("the converted model does not pass onnx.checker: {}".format(error)) from error
    if class_shape[1:] and class_shape[-1] != anchors.shape[0]:
        raise ConversionError(
            "the class scores cover {} anchors but the graph makes {} anchors".format(class_shape[-1], len(anchors))
        )
    description = {
        "input_size": input_size,
        "classes": class_shape[1] - 1 if len(class_shape) == 3 else None,
        "anchors": int(anchors.shape[0]),
        "detection": settings,
        "opset": OPSET,
    }
    return model.SerializeToString(), description


def synthetic_images(input_size, count=3):
    """Fixed verification images (BGR uint8) for when the user gives none: seeded noise, a gradient, boxes."""
    import numpy as np

    size = max(int(input_size), 32)
    rng = np.random.RandomState(20261206)
    noise = rng.randint(0, 256, (size, size, 3)).astype(np.uint8)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    gradient = np.stack(
        [np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), 255 - np.tile(ramp, (size, 1))], 2
    )
    # Not grey: a colour whose class scores tie exactly (as grey does for the tests' hand-weighted SSD) leaves
    # the class to rounding, differently in each runtime.
    boxes = np.empty((size, size, 3), dtype=np.uint8)
    boxes[:] = (60, 140, 90)
    step = size // 4
    boxes[step : 2 * step, step : 2 * step] = (255, 0, 0)
    boxes[2 * step : 3 * step, 2 * step : 3 * step] = (0, 255, 255)
    return [noise, gradient.astype(np.uint8), boxes][:count]


def preprocess(image_bgr, input_size):
    """As the detector does it (files/inference_lambda/object_detector.py ObjectDetector.preprocess)."""
    import cv2
    import numpy as np

    resized = cv2.resize(image_bgr, (input_size, input_size), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)[np.newaxis]


def read_images(paths):
    import cv2

    images = []
    for path in paths:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise ConversionError("verify_images: cannot read {} as an image".format(path))
        images.append(image)
    return images


def verify(checkpoint, onnx_bytes, images, input_size, score_tolerance, box_tolerance):
    """Detections of the checkpoint on MXNet and of the ONNX model on ONNX Runtime (decoded by MXNet's
    MultiBoxDetection with the settings stored in the model), image by image. ConversionError when the kept
    detections differ in number or class, or a score or box coordinate by more than its tolerance."""
    import mxnet as mx
    import onnxruntime

    symbol, arg_params, aux_params = checkpoint
    shape = (1, 3, input_size, input_size)
    executor = symbol.simple_bind(mx.cpu(), grad_req="null", **{INPUT_NAME: shape})
    for name, value in arg_params.items():
        if name in executor.arg_dict:
            executor.arg_dict[name][:] = value
    for name, value in aux_params.items():
        if name in executor.aux_dict:
            executor.aux_dict[name][:] = value
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    settings = json.loads(session.get_modelmeta().custom_metadata_map[DETECTION_METADATA])
    report = {"images": 0, "detections": 0, "max_score_difference": 0.0, "max_box_difference": 0.0}
    for index, image in enumerate(images):
        batch = preprocess(image, input_size)
        executor.arg_dict[INPUT_NAME][:] = batch
        executor.forward(is_train=False)
        expected = executor.outputs[0].asnumpy()[0]
        probabilities, offsets, anchors = session.run(list(OUTPUTS), {INPUT_NAME: batch})
        decoded = mx.nd.contrib.MultiBoxDetection(
            mx.nd.array(probabilities),
            mx.nd.array(offsets),
            mx.nd.array(anchors),
            threshold=settings["threshold"],
            clip=settings["clip"],
            variances=tuple(settings["variances"]),
            nms_threshold=settings["nms_threshold"],
            force_suppress=settings["force_suppress"],
            nms_topk=settings["nms_topk"],
        ).asnumpy()[0]
        kept_expected = expected[expected[:, 0] >= 0]
        kept = decoded[decoded[:, 0] >= 0]
        unmatched, score_difference, box_difference = match_detections(
            kept_expected, kept, score_tolerance, box_tolerance
        )
        if unmatched or len(kept) != len(kept_expected):
            raise ConversionError(
                "image {}: MXNet finds {} detections, the ONNX model {}; {} of MXNet's have no match of the same class "
                "within the tolerances (score {}, box {}), first: {}".format(
                    index,
                    len(kept_expected),
                    len(kept),
                    len(unmatched),
                    score_tolerance,
                    box_tolerance,
                    [round(float(value), 4) for value in unmatched[0]] if unmatched else None,
                )
            )
        report["max_score_difference"] = max(report["max_score_difference"], score_difference)
        report["max_box_difference"] = max(report["max_box_difference"], box_difference)
        report["images"] += 1
        report["detections"] += int(len(kept))
    return report


def match_detections(expected, found, score_tolerance, box_tolerance):
    """Pair each expected row [class, score, box] with an unused found row of the same class whose score and box
    are within the tolerances (closest first). Rows of equal score may come in either order from two runtimes,
    so the comparison is by pairs, not by position. Returns (unmatched expected rows, largest score difference,
    largest box difference over the pairs)."""
    import numpy as np

    used = np.zeros(len(found), dtype=bool)
    unmatched, score_difference, box_difference = [], 0.0, 0.0
    for row in expected:
        scores = np.abs(found[:, 1] - row[1])
        boxes = np.abs(found[:, 2:6] - row[2:6]).max(axis=1) if len(found) else np.zeros(0)
        fits = (~used) & (found[:, 0] == row[0]) & (scores <= score_tolerance) & (boxes <= box_tolerance)
        if not fits.any():
            unmatched.append(row)
            continue
        best = int(np.flatnonzero(fits)[np.argmin((scores + boxes)[fits])])
        used[best] = True
        score_difference = max(score_difference, float(scores[best]))
        box_difference = max(box_difference, float(boxes[best]))
    return unmatched, score_difference, box_difference


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def deterministic_tar_gz(members):
    """Bytes of a .tar.gz of ``[(name, bytes)]`` with fixed order, times, owners and modes (same input, same
    bytes), like the SageMaker archive the detector unpacks."""
    import gzip
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as compressed:
        compressed.write(raw.getvalue())
    return packed.getvalue()
