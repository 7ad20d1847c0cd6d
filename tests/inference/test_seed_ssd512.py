"""The seed's real ResNet-50 SSD512 graph (random weights) end to end on its real 1080p frames."""

from __future__ import annotations

import json

import greengrass_object_detector as handler_module
import object_detector as od
import pytest

from tests.inference import seed_model

pytestmark = pytest.mark.slow
BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


def assert_valid_payload(payload, image_path, threshold):
    assert "error" not in payload, payload
    assert payload["image_path"] == str(image_path)
    assert payload["image_size"] == {"width": 1920, "height": 1080}
    detections = payload["detections"]
    assert payload["detection_count"] == len(detections) <= payload["detections_above_threshold"]
    for detection in detections:
        assert detection["class_id"] in (0, 1)  # the graph has 2 classes (+ background)
        assert detection["score"] >= threshold
        box = [detection["box"][key] for key in BOX_KEYS]
        pixels = [detection["box_pixels"][key] for key in BOX_KEYS]
        assert all(0.0 <= value <= 1.0 for value in box)
        assert box[0] <= box[2] and box[1] <= box[3]
        assert pixels == pytest.approx([box[0] * 1920, box[1] * 1080, box[2] * 1920, box[3] * 1080], abs=1)
    timing = payload["timing_ms"]
    assert timing["forward_ms"] > 0 and timing["total_ms"] >= timing["forward_ms"]
    json.dumps(payload)


def test_seed_graph_loads_and_runs_real_frames(seed_random_model):
    config = od.DetectorConfig(model_path=str(seed_random_model), class_labels=["blue_box", "yellow_box"])
    assert config.input_size == 512  # from the artefact's hyperparams.json
    detector = od.ObjectDetector(config)
    assert detector.anchor_count == 6132
    for image in seed_model.seed_images():
        assert_valid_payload(detector.detect_file(str(image)), image, 0.5)


def test_seed_graph_through_the_v1_handler(seed_random_model, monkeypatch):
    messages = []
    monkeypatch.setenv("MODEL_PATH", str(seed_random_model))
    monkeypatch.setenv("SCORE_THRESHOLD", "0.9")
    handler_module.set_publisher(lambda topic, payload: messages.append((topic, json.loads(payload))))
    handler_module.reset()
    try:
        image = seed_model.seed_images()[1]
        handler_module.function_handler({"image_path": str(image)}, None)
        handler_module.function_handler({"image_path": "/nonexistent/frame.jpg"}, None)
    finally:
        handler_module.set_publisher(None)
        handler_module.reset()
    assert [topic for topic, _ in messages] == ["blog/infer/output"] * 2
    assert_valid_payload(messages[0][1], image, 0.9)
    assert messages[1][1]["error"] == "image file not found: /nonexistent/frame.jpg"
