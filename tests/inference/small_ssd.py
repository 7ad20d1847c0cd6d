"""A small, real SSD-shaped MXNet model whose detections are known in advance.

Same interface as SageMaker's deploy artefact (input ``data`` [1, 3, S, S] raw RGB
0..255, output ``detection_output`` [1, N, 6] from ``contrib.MultiBoxDetection``),
saved with ``mx.model.save_checkpoint(prefix, 0, ...)``. The weights are set by hand:

- ``conv0`` (1x1) scales RGB to 0..1, then average pooling divides the image into a
  ``GRID`` x ``GRID`` grid of cells: each cell's feature is its mean colour.
- Two anchors per cell (``contrib.MultiBoxPrior``): anchor 0 is the cell itself,
  anchor 1 a slightly larger square on the same centre, so NMS suppresses it
  (a ``class_id == -1`` row that keeps a high score).
- The class head (1x1 conv) gives logits ``W @ rgb + b``: "blue_box" rises with
  blue over red and green, "yellow_box" with red and green over blue, background
  is a constant. The loc head is zero, so each detection's box is its anchor.

So a uniformly coloured cell's class probabilities are exactly
``class_probabilities(rgb, anchor)`` and a detection's box is the cell.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import mxnet as mx
import numpy as np

CLASS_LABELS = ("blue_box", "yellow_box")
GRID = 4
INPUT_SIZE = 512
ANCHOR_SIZES = (1.0 / GRID, 1.2 / GRID)
# Rows: background, blue_box, yellow_box; columns: R, G, B (0..1).
CLASS_WEIGHTS = np.array([[0.0, 0.0, 0.0], [-5.0, -5.0, 10.0], [5.0, 5.0, -10.0]], dtype=np.float32)
BACKGROUND_LOGIT = 2.0
# Anchor 0 scores a little higher than anchor 1, so NMS keeps the cell-sized box.
ANCHOR_LOGIT_BONUS = (0.5, 0.0)
BACKGROUND_BGR = (128, 128, 128)


def build_symbol(input_size: int = INPUT_SIZE, grid: int = GRID) -> mx.sym.Symbol:
    num_classes = len(CLASS_LABELS)
    num_anchors = len(ANCHOR_SIZES)
    data = mx.sym.var("data")
    features = mx.sym.Convolution(data, kernel=(1, 1), num_filter=3, name="conv0")
    features = mx.sym.Activation(features, act_type="relu", name="relu0")
    cell = input_size // grid
    cells = mx.sym.Pooling(features, kernel=(cell, cell), stride=(cell, cell), pool_type="avg", name="cells")
    cls = mx.sym.Convolution(cells, kernel=(1, 1), num_filter=num_anchors * (num_classes + 1), name="cls_pred_conv")
    cls = mx.sym.flatten(mx.sym.transpose(cls, axes=(0, 2, 3, 1)))
    cls = mx.sym.transpose(mx.sym.reshape(cls, shape=(0, -1, num_classes + 1)), axes=(0, 2, 1), name="cls_pred")
    cls_prob = mx.sym.SoftmaxActivation(cls, mode="channel", name="cls_prob")
    loc = mx.sym.Convolution(cells, kernel=(1, 1), num_filter=num_anchors * 4, name="loc_pred_conv")
    loc = mx.sym.flatten(mx.sym.transpose(loc, axes=(0, 2, 3, 1)), name="loc_pred")
    anchors = mx.sym.contrib.MultiBoxPrior(cells, sizes=ANCHOR_SIZES, ratios=(1,), name="anchors")
    anchors = mx.sym.reshape(anchors, shape=(0, -1, 4))
    return mx.sym.contrib.MultiBoxDetection(
        cls_prob, loc, anchors, nms_threshold=0.45, force_suppress=True, nms_topk=400, name="detection"
    )


def build_params() -> dict[str, mx.nd.NDArray]:
    num_anchors = len(ANCHOR_SIZES)
    cls_weight = np.zeros((num_anchors * (len(CLASS_LABELS) + 1), 3, 1, 1), dtype=np.float32)
    cls_bias = np.zeros(cls_weight.shape[0], dtype=np.float32)
    for anchor in range(num_anchors):
        for klass in range(len(CLASS_LABELS) + 1):
            channel = anchor * (len(CLASS_LABELS) + 1) + klass
            cls_weight[channel, :, 0, 0] = CLASS_WEIGHTS[klass]
            cls_bias[channel] = BACKGROUND_LOGIT if klass == 0 else ANCHOR_LOGIT_BONUS[anchor]
    return {
        "conv0_weight": mx.nd.array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1) / 255.0),
        "conv0_bias": mx.nd.zeros(3),
        "cls_pred_conv_weight": mx.nd.array(cls_weight),
        "cls_pred_conv_bias": mx.nd.array(cls_bias),
        "loc_pred_conv_weight": mx.nd.zeros((num_anchors * 4, 3, 1, 1)),
        "loc_pred_conv_bias": mx.nd.zeros(num_anchors * 4),
    }


def export_small_ssd(directory: Path, name: str = "deploy_model_algo_1") -> Path:
    """Write ``<name>-symbol.json`` and ``<name>-0000.params`` like SageMaker's artefact; returns the prefix."""
    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / name
    mx.model.save_checkpoint(str(prefix), 0, build_symbol(), build_params(), {})
    return prefix


def class_probabilities(rgb: tuple[int, int, int], anchor: int = 0) -> np.ndarray:
    """Softmax over (background, blue_box, yellow_box) for a cell of one colour, computed without MXNet."""
    logits = CLASS_WEIGHTS @ (np.asarray(rgb, dtype=np.float64) / 255.0)
    logits += np.array([BACKGROUND_LOGIT, ANCHOR_LOGIT_BONUS[anchor], ANCHOR_LOGIT_BONUS[anchor]])
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def cell_box(row: int, column: int, grid: int = GRID) -> tuple[float, float, float, float]:
    """Normalised (xmin, ymin, xmax, ymax) of a grid cell: anchor 0's box there."""
    return column / grid, row / grid, (column + 1) / grid, (row + 1) / grid


def synthetic_image(width: int, height: int, boxes: dict[tuple[int, int], tuple[int, int, int]]) -> np.ndarray:
    """A grey BGR image with the given grid cells ``{(row, column): (r, g, b)}`` filled in."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = BACKGROUND_BGR
    for (row, column), (red, green, blue) in boxes.items():
        xmin, ymin, xmax, ymax = cell_box(row, column)
        rows = slice(round(ymin * height), round(ymax * height))
        columns = slice(round(xmin * width), round(xmax * width))
        image[rows, columns] = (blue, green, red)
    return image


def write_synthetic_image(path: Path, width: int, height: int, boxes) -> Path:
    if not cv2.imwrite(str(path), synthetic_image(width, height, boxes)):
        raise OSError(f"cannot write {path}")
    return path
