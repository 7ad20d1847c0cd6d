"""The Greengrass V1 entry point, off-core, with an injected publisher and the real small model.

``greengrasssdk``'s iot-data client needs a running V1 core (``greengrass_common``),
so messages go to a list through ``set_publisher``: the one substitute here, and
only for the transport. The model, MXNet and the image files are real.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import cv2
import greengrass_object_detector as handler_module
import object_detector
import pytest

from tests.inference import small_ssd
from tests.inference.conftest import LAMBDA_DIR


class Recorder:
    def __init__(self):
        self.messages = []

    def __call__(self, topic, payload):
        assert isinstance(payload, bytes)
        self.messages.append((topic, json.loads(payload)))


@pytest.fixture
def published(monkeypatch, small_model):
    monkeypatch.setenv("MODEL_PATH", str(small_model))
    monkeypatch.setenv("CLASS_LABELS", ",".join(small_ssd.CLASS_LABELS))
    for name in ("SCORE_THRESHOLD", "OUTPUT_TOPIC", "MAX_DETECTIONS", "MODEL_INPUT_SIZE", "DETECTOR_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    recorder = Recorder()
    handler_module.set_publisher(recorder)
    handler_module.reset()
    yield recorder.messages
    handler_module.set_publisher(None)
    handler_module.reset()


def labels_of(payload):
    return sorted(detection["label"] for detection in payload["detections"])


def test_image_event_publishes_all_detections_on_the_output_topic(published, scene_image):
    returned = handler_module.function_handler({"image_path": str(scene_image)}, None)

    assert len(published) == 1
    topic, payload = published[0]
    assert topic == "blog/infer/output"
    assert payload == json.loads(json.dumps(returned))
    assert labels_of(payload) == ["blue_box", "blue_box", "yellow_box"]
    assert payload["image_path"] == str(scene_image) and "error" not in payload
    assert payload["timestamp"] > 0


@pytest.mark.parametrize(
    "make_event",
    [
        lambda path: {"filepath": path},  # the seed's event
        lambda path: json.dumps({"image_path": path}),
        lambda path: json.dumps({"image_path": path}).encode(),
    ],
    ids=["seed-filepath", "json-text", "json-bytes"],
)
def test_other_event_shapes(published, scene_image, make_event):
    handler_module.lambda_handler(make_event(str(scene_image)), None)
    assert labels_of(published[-1][1]) == ["blue_box", "blue_box", "yellow_box"]


def test_an_inline_image_is_detected_like_the_same_file(published, scene_image):
    """The image in the request (base64), for a client that cannot put a file on the device."""
    encoded = base64.b64encode(scene_image.read_bytes()).decode()
    handler_module.function_handler(json.dumps({"image_base64": encoded}), None)
    _topic, inline = published[-1]
    handler_module.function_handler({"image_path": str(scene_image)}, None)
    _topic, from_file = published[-1]
    assert "error" not in inline, inline
    assert inline["image_bytes"] == scene_image.stat().st_size and inline["image_path"] is None
    assert inline["detections"] == from_file["detections"]


def test_an_answer_names_the_device_greengrass_runs_it_on(published, scene_image, monkeypatch):
    monkeypatch.setenv("AWS_IOT_THING_NAME", "edge-03")
    handler_module.function_handler({"image_path": str(scene_image)}, None)
    assert published[-1][1]["thing_name"] == "edge-03"
    handler_module.function_handler({"image_path": "/nonexistent.jpg"}, None)
    assert published[-1][1]["thing_name"] == "edge-03" and "error" in published[-1][1]


def bad_inputs(tmp_path):
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.png"
    png = small_ssd.synthetic_image(64, 64, {})
    truncated.write_bytes(cv2.imencode(".png", png)[1].tobytes()[:40])
    return [
        ({"image_path": str(tmp_path / "missing.jpg")}, "image file not found", str(tmp_path / "missing.jpg")),
        ({"image_path": str(text_file)}, "cannot decode image", str(text_file)),
        ({"image_path": str(empty)}, "cannot decode image", str(empty)),
        ({"image_path": str(truncated)}, "cannot decode image", str(truncated)),
        ({"image_path": str(tmp_path)}, "image file not found", str(tmp_path)),
        ({"image_path": ""}, "event 'image_path' must be a non-empty string", None),
        ({"image_path": 42}, "event 'image_path' must be a non-empty string", None),
        ({"camera": "front"}, "event has no 'image_path'", None),
        (None, "event must be a JSON object with 'image_path'; got NoneType", None),
        ([1, 2], "event must be a JSON object with 'image_path'; got list", None),
        ("not json", "got text that is not JSON", None),
        (b"\xff\xfe", "got undecodable bytes", None),
        ({"image_base64": ""}, "event 'image_base64' must be a non-empty base64 string", None),
        ({"image_base64": "not base64!"}, "event 'image_base64' is not valid base64", None),
        ({"image_base64": base64.b64encode(b"plain text").decode()}, "cannot decode the inline image (10 bytes", None),
        (
            {"image_base64": "A" * (object_detector.INLINE_IMAGE_MAX_BYTES * 4 // 3 + 8)},
            "event 'image_base64' holds more than 96 KiB of image",
            None,
        ),
    ]


def test_bad_events_publish_an_error_and_the_next_good_event_still_works(published, scene_image, tmp_path):
    for event, message, image_path in bad_inputs(tmp_path):
        returned = handler_module.function_handler(event, None)
        topic, payload = published[-1]
        assert topic == "blog/infer/output"
        assert message in payload["error"], payload
        assert payload["image_path"] == image_path
        assert returned["error"] == payload["error"]

        handler_module.function_handler({"image_path": str(scene_image)}, None)
        assert labels_of(published[-1][1]) == ["blue_box", "blue_box", "yellow_box"]
    assert len(published) == 2 * len(bad_inputs(tmp_path))


def test_settings_reach_the_handler(published, scene_image, monkeypatch):
    monkeypatch.setenv("SCORE_THRESHOLD", "0.8")
    monkeypatch.setenv("OUTPUT_TOPIC", "factory/line1/detections")
    handler_module.reset()
    handler_module.function_handler({"image_path": str(scene_image)}, None)
    topic, payload = published[-1]
    assert topic == "factory/line1/detections"
    assert labels_of(payload) == ["blue_box", "yellow_box"] and payload["score_threshold"] == 0.8


def test_bad_setting_is_reported_per_event_then_recovers(published, scene_image, monkeypatch):
    monkeypatch.setenv("SCORE_THRESHOLD", "very")
    handler_module.function_handler({"image_path": str(scene_image)}, None)
    assert "SCORE_THRESHOLD must be a number" in published[-1][1]["error"]
    assert published[-1][1]["image_path"] == str(scene_image)

    monkeypatch.setenv("SCORE_THRESHOLD", "0.5")  # no restart needed: the load is retried
    handler_module.function_handler({"image_path": str(scene_image)}, None)
    assert len(published[-1][1]["detections"]) == 3


def test_model_not_there_yet_is_reported_then_loaded_once_it_appears(published, scene_image, monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "ml" / "deploy_model_algo_1"))
    handler_module.function_handler({"image_path": str(scene_image)}, None)
    assert "model file not found" in published[-1][1]["error"]

    small_ssd.export_small_ssd(tmp_path / "ml")
    handler_module.function_handler({"image_path": str(scene_image)}, None)
    assert len(published[-1][1]["detections"]) == 3
    detector = handler_module.service().detector()
    handler_module.function_handler({"image_path": str(scene_image)}, None)
    assert handler_module.service().detector() is detector, "the model is loaded once, not per event"


def test_a_failing_publish_does_not_stop_the_detector(published, scene_image):
    calls = []

    def flaky(topic, payload):
        calls.append(topic)
        if len(calls) == 1:
            raise ConnectionError("IPC down")
        published.append((topic, json.loads(payload)))

    handler_module.set_publisher(flaky)
    first = handler_module.function_handler({"image_path": str(scene_image)}, None)
    second = handler_module.function_handler({"image_path": str(scene_image)}, None)
    assert len(first["detections"]) == len(second["detections"]) == 3
    assert len(calls) == 2 and len(published) == 1


def run_python(code, **env):
    environ = {key: value for key, value in os.environ.items() if key not in ("MODEL_PATH", "AWS_IOT_THING_NAME")}
    environ.update(PYTHONPATH=str(LAMBDA_DIR), **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)


def test_importing_the_handler_does_not_need_a_greengrass_core():
    result = run_python(
        "import sys, greengrass_object_detector as h\n"
        "assert 'greengrasssdk' not in sys.modules, 'imported at module load'\n"
        "payload = h.function_handler({'image_path': '/nonexistent.jpg'}, None)\n"
        "print(payload['error'])\n"
        "assert 'greengrasssdk' in sys.modules, 'publishing off-core tries the SDK'\n"
    )
    assert result.returncode == 0, result.stderr
    # No ML resource off-core at the default path: reported, not raised.
    assert "model file not found: /ml/od/deploy_model_algo_1-symbol.json" in result.stdout
    # Off-core the SDK cannot publish; that is logged, not raised.
    assert "publishing to blog/infer/output failed" in result.stderr
    assert "greengrass_common" in result.stderr


def test_on_a_core_the_model_is_loaded_at_start_up(small_model):
    code = "import greengrass_object_detector as h\nprint(h._service is not None and h._service._detector is not None)"
    loaded = run_python(code, AWS_IOT_THING_NAME="edge-1", MODEL_PATH=str(small_model))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "True"

    # A model that is not there must not crash the container: the import succeeds and says why.
    missing = run_python(code, AWS_IOT_THING_NAME="edge-1", MODEL_PATH="/nonexistent/deploy_model_algo_1")
    assert missing.returncode == 0, missing.stderr
    assert missing.stdout.strip() == "False"
    assert "model not loaded at start-up (model file not found" in missing.stderr
