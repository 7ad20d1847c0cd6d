"""The ssd_model_onnx module's pure helpers: MultiBoxDetection settings read from the graph, detection matching,
deterministic archives. The conversion itself runs on real models in tests/inference/test_onnx_backend.py."""

from __future__ import annotations

import io
import tarfile

import numpy as np
from ansible_collections.edgeml.greengrass.plugins.module_utils import _ssd_onnx


def test_detection_settings_from_the_graph_attributes():
    attributes = {
        "force_suppress": "True",
        "nms_threshold": "0.45",
        "nms_topk": "400",
        "variances": "(0.1, 0.1, 0.2, 0.2)",
    }
    assert _ssd_onnx.detection_settings(attributes) == {
        "threshold": 0.01,
        "clip": True,
        "variances": [0.1, 0.1, 0.2, 0.2],
        "nms_threshold": 0.45,
        "force_suppress": True,
        "nms_topk": 400,
    }
    assert _ssd_onnx.detection_settings({"clip": "False"})["clip"] is False


def test_unmatched_detections_fail_the_verification():
    expected = np.array([[0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.6, 0.6, 0.9, 0.9]], dtype=np.float32)
    moved = expected.copy()
    moved[1, 2] += 0.01  # one box edge 1 % of the image off
    unmatched, score_difference, box_difference = _ssd_onnx.match_detections(expected, moved, 1e-3, 1e-3)
    assert [row.tolist() for row in unmatched] == [expected[1].tolist()]
    swapped = expected[::-1].copy()  # equal rows in another order match
    assert _ssd_onnx.match_detections(expected, swapped, 1e-3, 1e-3) == ([], 0.0, 0.0)


def test_archives_are_byte_for_byte_reproducible():
    members = [("conversion.json", b"{}"), ("model.onnx", b"\x08\x07")]
    first = _ssd_onnx.deterministic_tar_gz(members)
    assert first == _ssd_onnx.deterministic_tar_gz(members)
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        assert [(m.name, m.mtime, m.mode) for m in archive.getmembers()] == [
            ("conversion.json", 0, 0o644),
            ("model.onnx", 0, 0o644),
        ]
