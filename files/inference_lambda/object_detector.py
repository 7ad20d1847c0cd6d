"""SSD object detection for edge devices, independent of the Greengrass generation.

Loads a SageMaker built-in SSD deploy artefact once, on one of two backends:

- ONNX Runtime: ``<prefix>.onnx`` as the collection's ``ssd_model_onnx`` module converts it (the network up
  to its class probabilities and box offsets, the anchors as a constant output, the MultiBoxDetection
  settings in the model's metadata); decoding and non-maximum suppression run here, in numpy, as MXNet's
  ``_contrib_MultiBoxDetection`` does them (``multibox_detection``);
- MXNet (1.9.1, the seed's runtime; Python <= 3.11): ``<prefix>-symbol.json`` and ``<prefix>-0000.params``,
  as ``mx.model.load_checkpoint`` reads them;

and turns
an event naming an image file into a JSON-ready payload: every detection at or
above the score threshold, as class id, label, score, a box normalised to 0..1
and the same box in pixels of the original image, plus timings.

Nothing here imports ``greengrasssdk``: whoever runs the detector hands in a
``publish(topic, payload_bytes)`` callable (a Greengrass V1 Lambda, a V2
component, a test, the command line below).

Configuration (environment variables, read by ``DetectorConfig.from_environ``):

``MODEL_PATH``         artefact prefix, default ``/ml/od/deploy_model_algo_1``
``MODEL_EPOCH``        checkpoint epoch, default 0 (``-0000.params``)
``MODEL_INPUT_SIZE``   square input side in pixels; default ``image_shape`` from a
                       ``hyperparams.json`` beside the model, else 512
``SCORE_THRESHOLD``    0..1, default 0.5; detections scoring at or above it are kept
``MAX_DETECTIONS``     most detections per message (highest scores first), default
                       100 so a message stays far below MQTT's 128 KB; 0 = no limit
``CLASS_LABELS``       comma-separated labels in class-id order, or
``CLASS_LABELS_FILE``  a JSON list of labels; default ``class_labels.json`` beside
                       the model when present; otherwise labels are ``class_<id>``
``DETECTOR_BACKEND``   ``auto`` (ONNX Runtime when ``<prefix>.onnx`` exists, else MXNet),
                       ``onnxruntime`` or ``mxnet``
``DETECTOR_CONTEXT``   ``auto`` (GPU 0 when the backend sees one, else CPU), ``cpu``,
                       ``gpu`` or ``gpu:<n>``; ONNX Runtime takes, of TensorRT, CUDA,
                       OpenVINO and CPU, the first its build offers (``cpu``: CPU only)
``OUTPUT_TOPIC``       where results and errors go, default ``blog/infer/output``

Requests (the input event; JSON text or bytes, or a dict):

- ``{"image_path": "/path/on/the/device.jpg"}`` (the seed's ``{"filepath": ...}`` too): an image the device
  can read;
- ``{"image_base64": "<base64 of a JPEG/PNG file>"}``: the image itself, for a client with no access to the
  device's disk; at most ``INLINE_IMAGE_MAX_BYTES`` (96 KiB) of image, so that the request fits AWS IoT Core's
  128 KiB per message; beyond that the answer is an error saying so.

Every request gets one answer on ``OUTPUT_TOPIC``: the detections (with ``image_path``, or ``image_bytes`` for
an inline image, ``inference`` naming the backend and the device or execution provider it ran on,
``timing_ms`` and ``timestamp``), or ``{"error": ..., "image_path": ...}``; with
``AWS_IOT_THING_NAME`` set (Greengrass sets it) the answer names the device in ``thing_name``.

Command line (smoke test, annotated picture)::

    python object_detector.py --model /ml/od/deploy_model_algo_1 \\
        --image frame.jpg --annotate frame-detections.png
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

LOG = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = "/ml/od/deploy_model_algo_1"
DEFAULT_INPUT_SIZE = 512
DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_MAX_DETECTIONS = 100
DEFAULT_OUTPUT_TOPIC = "blog/infer/output"
DEFAULT_INPUT_TOPIC = "blog/infer/input"
INPUT_NAME = "data"
# The seed's event used "filepath"; "image_path" is this project's name for it.
EVENT_IMAGE_KEYS = ("image_path", "filepath")
# An image sent in the request itself, for a client with no access to the device's disk: base64 of an encoded
# image file (JPEG, PNG...). AWS IoT Core carries messages up to 128 KiB, base64 grows data by a third: 96 KiB.
EVENT_INLINE_IMAGE_KEY = "image_base64"
INLINE_IMAGE_MAX_BYTES = 96 * 1024

BACKENDS = ("auto", "onnxruntime", "mxnet")
# ONNX Runtime's execution providers, most preferred first; the CPU one is in every build.
ONNX_PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)
ONNX_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# The converted model's outputs and metadata key (plugins/module_utils/_ssd_onnx.py writes them).
ONNX_OUTPUTS = ("class_probabilities", "box_offsets", "anchors")
ONNX_DETECTION_METADATA = "edgeml.multibox_detection"

Publisher = Callable[[str, bytes], Any]


class CorePublisher:
    """A Lambda's way out: ``publish(topic, payload_bytes)`` when one was set (tests, other hosts), else a Greengrass
    V1 core's iot-data client, made on first use (greengrasssdk works only inside a running V1 core)."""

    def __init__(self) -> None:
        self._publish = None  # type: Optional[Publisher]

    def set(self, publish: Optional[Publisher]) -> None:
        """Send messages through ``publish``; None goes back to greengrasssdk."""
        self._publish = publish

    def __call__(self, topic: str, payload: bytes) -> None:
        if self._publish is None:
            import greengrasssdk

            client = greengrasssdk.client("iot-data")

            def publish_on_core(topic: str, payload: bytes) -> None:
                client.publish(topic=topic, payload=payload)

            self._publish = publish_on_core
        self._publish(topic, payload)


class DetectorError(Exception):
    """A problem with one event, the configuration or the model, reported on the output topic."""


class DetectorConfig:
    """Validated settings of one detector; build it with ``from_environ`` or directly."""

    def __init__(
        self,
        model_path: str = DEFAULT_MODEL_PATH,
        model_epoch: int = 0,
        input_size: Optional[int] = None,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        class_labels: Optional[Sequence[str]] = None,
        context: str = "auto",
        output_topic: str = DEFAULT_OUTPUT_TOPIC,
        backend: str = "auto",
    ) -> None:
        self.model_path = model_path
        self.model_epoch = _non_negative_int("MODEL_EPOCH", model_epoch)
        self.input_size = (
            _positive_int("MODEL_INPUT_SIZE", input_size)
            if input_size is not None
            else _input_size_from_hyperparams(model_path)
        )
        self.score_threshold = parse_score_threshold(score_threshold)
        self.max_detections = _non_negative_int("MAX_DETECTIONS", max_detections)
        self.class_labels = list(class_labels) if class_labels is not None else _labels_beside_model(model_path)
        self.context = _validate_context(context)
        self.backend = _validate_backend(backend)
        self.output_topic = output_topic or DEFAULT_OUTPUT_TOPIC

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None) -> DetectorConfig:
        source = os.environ if environ is None else environ
        # An empty variable (e.g. an unset template value) means "use the default", like an absent one.
        env = {key: value for key, value in source.items() if value != ""}
        model_path = env.get("MODEL_PATH", DEFAULT_MODEL_PATH)
        labels = None  # type: Optional[List[str]]
        if env.get("CLASS_LABELS"):
            labels = [label.strip() for label in env["CLASS_LABELS"].split(",")]
        elif env.get("CLASS_LABELS_FILE"):
            labels = _read_labels_file(env["CLASS_LABELS_FILE"])
        return cls(
            model_path=model_path,
            model_epoch=env.get("MODEL_EPOCH", "0"),
            input_size=env.get("MODEL_INPUT_SIZE"),
            score_threshold=env.get("SCORE_THRESHOLD", DEFAULT_SCORE_THRESHOLD),
            max_detections=env.get("MAX_DETECTIONS", DEFAULT_MAX_DETECTIONS),
            class_labels=labels,
            context=env.get("DETECTOR_CONTEXT", "auto"),
            output_topic=env.get("OUTPUT_TOPIC", DEFAULT_OUTPUT_TOPIC),
            backend=env.get("DETECTOR_BACKEND", "auto"),
        )

    def label_for(self, class_id: int) -> str:
        if 0 <= class_id < len(self.class_labels):
            return self.class_labels[class_id]
        return "class_{}".format(class_id)


def parse_score_threshold(value: Any) -> float:
    """A number in 0..1; out-of-range numbers are clamped (with a warning), anything else is refused."""
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise DetectorError("SCORE_THRESHOLD must be a number between 0 and 1, got {!r}".format(value)) from None
    if threshold != threshold:  # NaN compares unequal to itself
        raise DetectorError("SCORE_THRESHOLD must be a number between 0 and 1, got NaN")
    clamped = min(max(threshold, 0.0), 1.0)
    if clamped != threshold:
        LOG.warning("SCORE_THRESHOLD %s is outside 0..1; using %s", value, clamped)
    return clamped


def _positive_int(name: str, value: Any) -> int:
    number = _non_negative_int(name, value)
    if number == 0:
        raise DetectorError("{} must be a positive integer, got {!r}".format(name, value))
    return number


def _non_negative_int(name: str, value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise DetectorError("{} must be a non-negative integer, got {!r}".format(name, value)) from None
    if number < 0:
        raise DetectorError("{} must be a non-negative integer, got {!r}".format(name, value))
    return number


def _validate_context(context: str) -> str:
    text = (context or "auto").strip().lower()
    if text in ("auto", "cpu", "gpu"):
        return text
    if text.startswith("gpu:") and text[4:].isdigit():
        return text
    raise DetectorError("DETECTOR_CONTEXT must be auto, cpu, gpu or gpu:<n>, got {!r}".format(context))


def _validate_backend(backend: str) -> str:
    text = (backend or "auto").strip().lower()
    if text not in BACKENDS:
        raise DetectorError("DETECTOR_BACKEND must be one of {}, got {!r}".format(", ".join(BACKENDS), backend))
    return text


def _read_labels_file(path: str) -> List[str]:
    try:
        with open(path) as handle:
            labels = json.load(handle)
    except (OSError, ValueError) as exc:
        raise DetectorError("CLASS_LABELS_FILE {}: cannot read a JSON list of labels ({})".format(path, exc)) from None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise DetectorError("CLASS_LABELS_FILE {}: expected a JSON list of strings".format(path))
    return labels


def _labels_beside_model(model_path: str) -> List[str]:
    path = os.path.join(os.path.dirname(model_path), "class_labels.json")
    return _read_labels_file(path) if os.path.isfile(path) else []


def _input_size_from_hyperparams(model_path: str) -> int:
    """SageMaker's model tarball carries hyperparams.json; its image_shape is the training input side."""
    path = os.path.join(os.path.dirname(model_path), "hyperparams.json")
    if not os.path.isfile(path):
        return DEFAULT_INPUT_SIZE
    try:
        with open(path) as handle:
            shape = json.load(handle).get("image_shape", DEFAULT_INPUT_SIZE)
    except (OSError, ValueError, AttributeError) as exc:
        raise DetectorError("{}: cannot read image_shape ({})".format(path, exc)) from None
    return _positive_int("image_shape in {}".format(path), shape)


def select_context(requested: str):
    import mxnet as mx

    if hasattr(mx.context, "num_gpus"):
        gpus = mx.context.num_gpus()
    else:  # MXNet before 1.3, as on older Jetson images
        gpus = len(mx.test_utils.list_gpus())
    if requested == "auto":
        return mx.gpu(0) if gpus > 0 else mx.cpu()
    if requested == "cpu":
        return mx.cpu()
    index = int(requested.split(":", 1)[1]) if ":" in requested else 0
    if index >= gpus:
        message = "DETECTOR_CONTEXT {} asks for GPU {} but MXNet sees {} GPU(s)".format(requested, index, gpus)
        raise DetectorError(message)
    return mx.gpu(index)


def select_onnx_providers(requested: str, available: Sequence[str]) -> List[Any]:
    """ONNX Runtime execution providers for DETECTOR_CONTEXT, most preferred first, from those this build of
    onnxruntime offers: ``cpu`` takes the CPU alone; ``gpu``/``gpu:<n>`` require TensorRT or CUDA (on device n);
    ``auto`` takes every preferred one present, so a CPU-only build simply runs on the CPU."""
    offered = [name for name in ONNX_PROVIDER_PREFERENCE if name in available]
    if requested == "cpu":
        return ["CPUExecutionProvider"]
    if requested == "auto":
        return offered
    gpu_providers = [name for name in offered if name in ONNX_GPU_PROVIDERS]
    if not gpu_providers:
        raise DetectorError(
            "DETECTOR_CONTEXT {} asks for a GPU but this onnxruntime offers {} (install onnxruntime-gpu)".format(
                requested, ", ".join(available) or "no execution provider"
            )
        )
    index = int(requested.split(":", 1)[1]) if ":" in requested else 0
    return [(name, {"device_id": str(index)}) for name in gpu_providers] + ["CPUExecutionProvider"]


def multibox_detection(
    class_probabilities: np.ndarray,
    box_offsets: np.ndarray,
    anchors: np.ndarray,
    threshold: float = 0.01,
    clip: bool = True,
    variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
    nms_threshold: float = 0.5,
    force_suppress: bool = False,
    nms_topk: int = -1,
) -> np.ndarray:
    """MXNet's ``_contrib_MultiBoxDetection`` for one image, in numpy (float32 like MXNet's CPU kernel,
    src/operator/contrib/multibox_detection.cc): rows ``[class_id, score, xmin, ymin, xmax, ymax]``.

    ``class_probabilities`` [classes, anchors] (row 0 the background), ``box_offsets`` [anchors * 4],
    ``anchors`` [anchors, 4] as corners. Per anchor the best non-background class is kept when its probability
    reaches ``threshold``; the kept rows are sorted by score (ties in anchor order), cut to ``nms_topk``, and a
    row is suppressed (class -1) when its box overlaps a better kept one by IoU >= ``nms_threshold`` (of any
    class with ``force_suppress``, else of its own class). As MXNet 1.9.1 does, rows past ``nms_topk`` come back
    with class -1."""
    probabilities = np.asarray(class_probabilities, dtype=np.float32)
    num_classes, num_anchors = probabilities.shape
    if num_classes < 2:
        raise DetectorError("class probabilities need a background and at least one class, got {}".format(num_classes))
    offsets = np.asarray(box_offsets, dtype=np.float32).reshape(num_anchors, 4)
    anchors = np.asarray(anchors, dtype=np.float32).reshape(num_anchors, 4)
    foreground = probabilities[1:]
    class_index = np.argmax(foreground, axis=0)  # first of equal maxima, as the kernel's strict ">" keeps
    scores = foreground[class_index, np.arange(num_anchors)]
    valid = np.flatnonzero(scores >= np.float32(threshold))
    if valid.size == 0:
        return np.zeros((0, 6), dtype=np.float32)
    order = valid[np.argsort(-scores[valid], kind="stable")]
    keep = order if nms_topk <= 0 else order[:nms_topk]
    rows = np.empty((order.size, 6), dtype=np.float32)
    rows[:, 0] = class_index[order]
    rows[:, 1] = scores[order]
    rows[:, 2:] = _decode_boxes(anchors[order], offsets[order], clip, variances)
    rows[keep.size :, 0] = -1
    if 0 < nms_threshold <= 1:
        _suppress(rows[: keep.size], np.float32(nms_threshold), force_suppress)
    return rows


def _decode_boxes(anchors: np.ndarray, offsets: np.ndarray, clip: bool, variances: Sequence[float]) -> np.ndarray:
    vx, vy, vw, vh = (np.float32(value) for value in variances)
    width = anchors[:, 2] - anchors[:, 0]
    height = anchors[:, 3] - anchors[:, 1]
    centre_x = (anchors[:, 0] + anchors[:, 2]) / np.float32(2)
    centre_y = (anchors[:, 1] + anchors[:, 3]) / np.float32(2)
    x = offsets[:, 0] * vx * width + centre_x
    y = offsets[:, 1] * vy * height + centre_y
    with np.errstate(over="ignore"):  # an untrained model's huge offsets: inf, clipped below as MXNet does
        half_w = np.exp(offsets[:, 2] * vw) * width / np.float32(2)
        half_h = np.exp(offsets[:, 3] * vh) * height / np.float32(2)
    boxes = np.stack([x - half_w, y - half_h, x + half_w, y + half_h], axis=1).astype(np.float32)
    return np.clip(boxes, 0, 1) if clip else boxes


def _suppress(rows: np.ndarray, nms_threshold: np.float32, force_suppress: bool) -> None:
    """Greedy non-maximum suppression in place over rows sorted best first (class set to -1)."""
    boxes = rows[:, 2:6]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in range(rows.shape[0]):
        if rows[i, 0] < 0:
            continue
        rest = np.arange(i + 1, rows.shape[0])
        rest = rest[rows[rest, 0] >= 0]
        if not force_suppress:
            rest = rest[rows[rest, 0] == rows[i, 0]]
        if rest.size == 0:
            continue
        w = np.maximum(np.float32(0), np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]))
        h = np.maximum(np.float32(0), np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]))
        intersection = w * h
        union = areas[i] + areas[rest] - intersection
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union <= 0, np.float32(0), intersection / union)
        rows[rest[iou >= nms_threshold], 0] = -1


def decode_detections(
    rows: np.ndarray,
    image_width: int,
    image_height: int,
    score_threshold: float,
    label_for: Callable[[int], str],
    max_detections: int = 0,
) -> Tuple[List[Dict[str, Any]], int]:
    """Keep MultiBoxDetection rows ``[class_id, score, xmin, ymin, xmax, ymax]`` worth reporting.

    Suppressed and background rows carry ``class_id == -1`` (often with a high score),
    so both the class and the score decide. Returns the detections (best first, at
    most ``max_detections`` unless 0) and how many rows passed before that cap.
    """
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
    keep = (rows[:, 0] >= 0) & (rows[:, 1] >= score_threshold)  # NaN scores fail the comparison
    kept = rows[keep]
    kept = kept[np.argsort(-kept[:, 1], kind="stable")]
    total = int(kept.shape[0])
    if max_detections:
        kept = kept[:max_detections]
    boxes = np.clip(kept[:, 2:6], 0.0, 1.0)
    scale = np.array([image_width, image_height, image_width, image_height], dtype=np.float64)
    pixels = np.rint(boxes * scale).astype(np.int64)
    class_ids = kept[:, 0].astype(np.int64).tolist()
    scores = np.round(kept[:, 1].astype(np.float64), 4).tolist()
    boxes_list = np.round(boxes.astype(np.float64), 5).tolist()
    pixels_list = pixels.tolist()
    detections = []
    for class_id, score, box, pixel_box in zip(class_ids, scores, boxes_list, pixels_list):
        detections.append(
            OrderedDict(
                [
                    ("class_id", class_id),
                    ("label", label_for(class_id)),
                    ("score", score),
                    ("box", OrderedDict(zip(("xmin", "ymin", "xmax", "ymax"), box))),
                    ("box_pixels", OrderedDict(zip(("xmin", "ymin", "xmax", "ymax"), pixel_box))),
                ]
            )
        )
    return detections, total


def image_from_event(event: Any) -> Union[str, bytes]:
    """The image an input event asks about: the path it names (str), or the bytes of an inline image
    (``image_base64``), or DetectorError saying what was expected."""
    request = _event_object(event)
    if EVENT_INLINE_IMAGE_KEY in request:
        encoded = request[EVENT_INLINE_IMAGE_KEY]
        if not isinstance(encoded, str) or not encoded.strip():
            raise DetectorError("event 'image_base64' must be a non-empty base64 string")
        if len(encoded) > (INLINE_IMAGE_MAX_BYTES * 4) // 3 + 4:
            raise DetectorError(
                "event 'image_base64' holds more than {} KiB of image (AWS IoT Core carries 128 KiB per message): "
                "send a smaller image, or put it on the device and send 'image_path'".format(
                    INLINE_IMAGE_MAX_BYTES // 1024
                )
            )
        try:
            return base64.b64decode(encoded, validate=True)
        except (ValueError, TypeError):
            raise DetectorError("event 'image_base64' is not valid base64") from None
    return image_path_from_event(request)


def _event_object(event: Any) -> Mapping:
    if isinstance(event, (bytes, bytearray)):
        try:
            event = event.decode("utf-8")
        except UnicodeDecodeError:
            raise DetectorError("event must be a JSON object with 'image_path'; got undecodable bytes") from None
    if isinstance(event, str):
        try:
            event = json.loads(event)
        except ValueError:
            raise DetectorError("event must be a JSON object with 'image_path'; got text that is not JSON") from None
    if not isinstance(event, Mapping):
        raise DetectorError("event must be a JSON object with 'image_path'; got {}".format(type(event).__name__))
    return event


def image_path_from_event(event: Any) -> str:
    """The image path an input event names, or DetectorError saying what was expected."""
    event = _event_object(event)
    for key in EVENT_IMAGE_KEYS:
        if key in event:
            path = event[key]
            if not isinstance(path, str) or not path.strip():
                raise DetectorError("event '{}' must be a non-empty string, got {!r}".format(key, path))
            return path
    raise DetectorError(
        "event has no 'image_path' (or the seed's 'filepath', or an inline 'image_base64'); keys: {}".format(
            sorted(event)
        )
    )


def read_image(path: str) -> np.ndarray:
    """The image as 8-bit BGR, or DetectorError (OpenCV returns None rather than raising)."""
    if not os.path.isfile(path):
        raise DetectorError("image file not found: {}".format(path))
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DetectorError("cannot decode image (not a readable image file): {}".format(path))
    return image


class MxnetBackend:
    """The SageMaker artefact itself on MXNet: ``<prefix>-symbol.json`` and ``<prefix>-<epoch>.params``."""

    name = "mxnet"

    def __init__(self, config: DetectorConfig) -> None:
        try:
            import mxnet as mx
        except ImportError as error:
            raise DetectorError(
                "DETECTOR_BACKEND mxnet: MXNet is not importable by {} ({})".format(sys.executable, error)
            ) from None
        self.context = select_context(config.context)
        self.device = str(self.context)
        prefix = config.model_path
        params_file = "{}-{:04d}.params".format(prefix, config.model_epoch)
        for path in (prefix + "-symbol.json", params_file):
            if not os.path.isfile(path):
                raise DetectorError("model file not found: {} (MODEL_PATH={})".format(path, prefix))
        symbol, arg_params, aux_params = mx.model.load_checkpoint(prefix, config.model_epoch)
        size = config.input_size
        input_shape = (1, 3, size, size)
        arguments = symbol.list_arguments()
        if INPUT_NAME not in arguments:
            raise DetectorError("model {} has no '{}' input; inputs: {}".format(prefix, INPUT_NAME, arguments))
        missing = [name for name in arguments if name != INPUT_NAME and name not in arg_params]
        missing += [name for name in symbol.list_auxiliary_states() if name not in aux_params]
        if missing:
            raise DetectorError("model {}: parameters missing from {}: {}".format(prefix, params_file, missing[:5]))
        _, output_shapes, _ = symbol.infer_shape(**{INPUT_NAME: input_shape})
        if len(output_shapes[0]) != 3 or output_shapes[0][2] != 6:
            raise DetectorError(
                "model {}: expected a detection output [1, N, 6], got {}".format(prefix, list(output_shapes[0]))
            )
        ctx = self.context
        self._input = mx.nd.zeros(input_shape, ctx=ctx, dtype="float32")
        args = {name: arg_params[name].as_in_context(ctx) for name in arguments if name != INPUT_NAME}
        args[INPUT_NAME] = self._input
        aux = {name: aux_params[name].as_in_context(ctx) for name in symbol.list_auxiliary_states()}
        # A bare executor: the input array is written in place, no per-frame NDArray or DataBatch.
        self._executor = symbol.bind(ctx, args=args, aux_states=aux, grad_req="null")
        self.anchor_count = int(output_shapes[0][1])

    def forward(self, batch: np.ndarray) -> np.ndarray:
        self._input[:] = batch
        self._executor.forward(is_train=False)
        return self._executor.outputs[0].asnumpy()[0]


class OnnxRuntimeBackend:
    """``<prefix>.onnx`` (the ``ssd_model_onnx`` module's conversion) on ONNX Runtime, decoded in numpy."""

    name = "onnxruntime"

    def __init__(self, config: DetectorConfig) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise DetectorError(
                "DETECTOR_BACKEND onnxruntime: onnxruntime is not importable by {} ({})".format(sys.executable, error)
            ) from None
        path = config.model_path + ".onnx"
        if not os.path.isfile(path):
            raise DetectorError("model file not found: {} (MODEL_PATH={})".format(path, config.model_path))
        providers = select_onnx_providers(config.context, onnxruntime.get_available_providers())
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are not ours to fix
        try:
            self._session = onnxruntime.InferenceSession(path, sess_options=options, providers=providers)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise DetectorError("model {}: ONNX Runtime cannot load it ({})".format(path, error)) from None
        self.device = self._session.get_providers()[0]
        inputs = self._session.get_inputs()
        size = config.input_size
        if [model_input.name for model_input in inputs] != [INPUT_NAME]:
            raise DetectorError(
                "model {}: expected one input '{}', got {}".format(path, INPUT_NAME, [i.name for i in inputs])
            )
        if list(inputs[0].shape)[2:] != [size, size]:
            raise DetectorError(
                "model {}: its input is {} but MODEL_INPUT_SIZE is {} (convert it again for that size)".format(
                    path, inputs[0].shape, size
                )
            )
        outputs = [output.name for output in self._session.get_outputs()]
        missing = [name for name in ONNX_OUTPUTS if name not in outputs]
        metadata = self._session.get_modelmeta().custom_metadata_map
        if missing or ONNX_DETECTION_METADATA not in metadata:
            raise DetectorError(
                "model {}: not an SSD converted by edgeml.greengrass.ssd_model_onnx (outputs {}, metadata {})".format(
                    path, outputs, sorted(metadata)
                )
            )
        self._settings = json.loads(metadata[ONNX_DETECTION_METADATA])
        # The anchors depend on the input size only: read once (this first run also warms the session up).
        zeros = np.zeros((1, 3, size, size), dtype=np.float32)
        self._anchors = self._session.run(["anchors"], {INPUT_NAME: zeros})[0].reshape(-1, 4)
        self.anchor_count = int(self._anchors.shape[0])

    def forward(self, batch: np.ndarray) -> np.ndarray:
        probabilities, offsets = self._session.run(list(ONNX_OUTPUTS[:2]), {INPUT_NAME: batch})
        return multibox_detection(probabilities[0], offsets[0], self._anchors, **self._settings)


def load_backend(config: DetectorConfig):
    """The backend DETECTOR_BACKEND names; ``auto``: ONNX Runtime when ``<prefix>.onnx`` exists, else MXNet."""
    backend = config.backend
    if backend == "auto":
        backend = "onnxruntime" if os.path.isfile(config.model_path + ".onnx") else "mxnet"
    return OnnxRuntimeBackend(config) if backend == "onnxruntime" else MxnetBackend(config)


class ObjectDetector:
    """One SSD model bound for inference on one device; load once, call per frame."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        started = time.perf_counter()
        self.backend = load_backend(config)
        size = config.input_size
        self.input_shape = (1, 3, size, size)
        self.anchor_count = self.backend.anchor_count
        self.inference = OrderedDict([("backend", self.backend.name), ("device", self.backend.device)])
        LOG.info(
            "loaded %s with %s on %s in %.0f ms (%d anchors, input %dx%d)",
            config.model_path,
            self.backend.name,
            self.backend.device,
            (time.perf_counter() - started) * 1000.0,
            self.anchor_count,
            size,
            size,
        )

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """BGR HxWx3 uint8 -> RGB 1x3xSxS float32, raw 0..255 (the SSD graph normalises inside)."""
        size = self.config.input_size
        # Resizing first makes the colour swap work on the small image; both are per-channel, so order is free.
        resized = cv2.resize(image_bgr, (size, size), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)[np.newaxis]

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Raw MultiBoxDetection rows, shape [N, 6]."""
        return self.backend.forward(batch)

    def detect_image(self, image_bgr: np.ndarray, timing: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
        timing = OrderedDict() if timing is None else timing
        started = time.perf_counter()
        batch = self.preprocess(image_bgr)
        preprocessed = time.perf_counter()
        rows = self.forward(batch)
        forwarded = time.perf_counter()
        height, width = image_bgr.shape[:2]
        config = self.config
        detections, total = decode_detections(
            rows, width, height, config.score_threshold, config.label_for, config.max_detections
        )
        done = time.perf_counter()
        timing["preprocess_ms"] = _ms(started, preprocessed)
        timing["forward_ms"] = _ms(preprocessed, forwarded)
        timing["postprocess_ms"] = _ms(forwarded, done)
        return OrderedDict(
            [
                ("image_size", OrderedDict([("width", int(width)), ("height", int(height))])),
                ("score_threshold", config.score_threshold),
                ("detection_count", len(detections)),
                ("detections_above_threshold", total),
                ("detections", detections),
                ("inference", OrderedDict(self.inference)),
            ]
        )

    def detect_encoded(self, data: bytes) -> Dict[str, Any]:
        """Like detect_file, for the bytes of an encoded image sent in the request."""
        started = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
        if image is None:
            raise DetectorError(
                "cannot decode the inline image ({} bytes, not a readable image file)".format(len(data))
            )
        return self._answer(image, started, OrderedDict([("image_path", None), ("image_bytes", len(data))]))

    def detect_file(self, image_path: str) -> Dict[str, Any]:
        started = time.perf_counter()
        return self._answer(read_image(image_path), started, OrderedDict([("image_path", image_path)]))

    def _answer(self, image: np.ndarray, started: float, source: Dict[str, Any]) -> Dict[str, Any]:
        """``source`` (where the image came from), then the detections and the timings since ``started``
        (decoding included)."""
        timing = OrderedDict([("decode_ms", _ms(started, time.perf_counter()))])
        result = self.detect_image(image, timing)
        timing["total_ms"] = _ms(started, time.perf_counter())
        source.update(result)
        source["timing_ms"] = timing
        return source


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000.0, 3)


class InferenceService:
    """Event in, payload published: what a Lambda or component handler delegates to.

    Settings are read and the model loaded on first use, then kept; a failure (bad
    setting, model not synced yet) is reported on the output topic and retried on
    the next event.
    Nothing an event contains makes ``handle`` raise.
    """

    def __init__(
        self,
        publish: Publisher,
        config_factory: Callable[[], DetectorConfig] = DetectorConfig.from_environ,
        detector_factory: Callable[[DetectorConfig], ObjectDetector] = ObjectDetector,
        answer_fields: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """``answer_fields``: added to every answer (a Greengrass V2 component's name and version)."""
        self.publish = publish
        self._answer_fields = dict(answer_fields or {})
        self._config_factory = config_factory
        self._detector_factory = detector_factory
        self._config = None  # type: Optional[DetectorConfig]
        self._detector = None  # type: Optional[ObjectDetector]
        # One loaded model serves every event; MXNet executors are not safe to share across threads.
        self._lock = threading.Lock()

    @property
    def output_topic(self) -> str:
        if self._config is not None:
            return self._config.output_topic
        # Settings that fail validation still need somewhere to report it.
        return os.environ.get("OUTPUT_TOPIC") or DEFAULT_OUTPUT_TOPIC

    def detector(self) -> ObjectDetector:
        if self._detector is None:
            if self._config is None:
                self._config = self._config_factory()
            self._detector = self._detector_factory(self._config)
        return self._detector

    def handle(self, event: Any) -> Dict[str, Any]:
        image_path = None  # type: Optional[str]
        try:
            image = image_from_event(event)
            image_path = image if isinstance(image, str) else None
            with self._lock:
                detector = self.detector()
                payload = detector.detect_file(image) if image_path else detector.detect_encoded(image)
        except DetectorError as exc:
            payload = _error_payload(str(exc), image_path)
        except Exception as exc:  # noqa: BLE001 - a long-lived Lambda must survive any one bad frame
            LOG.exception("inference failed for %s", image_path)
            payload = _error_payload("{}: {}".format(type(exc).__name__, exc), image_path)
        payload["timestamp"] = time.time()
        # Which device answered: every device of a fleet subscribes to the same request topic (the seed's
        # design), so a requester tells the answers apart by this (Greengrass sets it for Lambdas and components).
        if os.environ.get("AWS_IOT_THING_NAME"):
            payload["thing_name"] = os.environ["AWS_IOT_THING_NAME"]
        payload.update(self._answer_fields)
        if "error" in payload:
            LOG.warning("%s", payload["error"])
        self._publish(payload)
        return payload

    def _publish(self, payload: Dict[str, Any]) -> None:
        topic = self.output_topic
        try:
            self.publish(topic, json.dumps(payload).encode("utf-8"))
        except Exception:  # noqa: BLE001 - losing one message must not stop the detector
            LOG.exception("publishing to %s failed", topic)


def _error_payload(message: str, image_path: Optional[str]) -> Dict[str, Any]:
    return OrderedDict([("error", message), ("image_path", image_path)])


_PALETTE = ((255, 128, 0), (0, 200, 255), (60, 220, 60), (200, 60, 255), (0, 80, 255), (255, 255, 0))


def draw_detections(image_bgr: np.ndarray, detections: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """A copy of the image with each detection's box and "label score" drawn on it."""
    canvas = image_bgr.copy()
    thickness = max(2, int(round(min(canvas.shape[:2]) / 300.0)))
    font_scale = max(0.5, min(canvas.shape[:2]) / 900.0)
    for detection in detections:
        box = detection["box_pixels"]
        colour = _PALETTE[int(detection["class_id"]) % len(_PALETTE)]
        top_left = (int(box["xmin"]), int(box["ymin"]))
        cv2.rectangle(canvas, top_left, (int(box["xmax"]), int(box["ymax"])), colour, thickness)
        text = "{} {:.2f}".format(detection["label"], detection["score"])
        (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        text_y = max(top_left[1], text_h + baseline)
        cv2.rectangle(
            canvas, (top_left[0], text_y - text_h - baseline), (top_left[0] + text_w, text_y), colour, cv2.FILLED
        )
        cv2.putText(canvas, text, (top_left[0], text_y - baseline), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1)
    return canvas


def write_annotated_png(image_path: str, payload: Mapping[str, Any], output_path: str) -> str:
    """Draw a result payload's detections on its image and save it as PNG; returns the path."""
    annotated = draw_detections(read_image(image_path), payload.get("detections", []))
    if not output_path.lower().endswith(".png"):
        raise DetectorError("annotated output must be a .png path, got {}".format(output_path))
    if not cv2.imwrite(output_path, annotated):
        raise DetectorError("cannot write {}".format(output_path))
    return output_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Run the SSD detector on image files and print JSON results.")
    parser.add_argument("--model", help="artefact prefix (default: $MODEL_PATH or {})".format(DEFAULT_MODEL_PATH))
    parser.add_argument("--image", action="append", required=True, help="image file; repeat for more")
    parser.add_argument("--threshold", help="score threshold 0..1 (default: $SCORE_THRESHOLD or 0.5)")
    parser.add_argument("--labels", help="comma-separated class labels (default: $CLASS_LABELS)")
    parser.add_argument("--annotate", help="write the first image with its detections drawn to this PNG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    environ = dict(os.environ)
    for key, value in (("MODEL_PATH", args.model), ("SCORE_THRESHOLD", args.threshold), ("CLASS_LABELS", args.labels)):
        if value is not None:
            environ[key] = value

    def print_payload(topic: str, payload: bytes) -> None:
        print(payload.decode("utf-8"))

    service = InferenceService(print_payload, config_factory=lambda: DetectorConfig.from_environ(environ))
    payloads = [service.handle({"image_path": path}) for path in args.image]
    if args.annotate and "error" not in payloads[0]:
        write_annotated_png(args.image[0], payloads[0], args.annotate)
        LOG.info("annotated image written to %s", args.annotate)
    return 1 if any("error" in payload for payload in payloads) else 0


if __name__ == "__main__":
    sys.exit(main())
