"""ObjectDetector on a real (small, hand-weighted) MXNet SSD: the detections it must find, and its settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import object_detector as od
import pytest

from tests.inference import small_ssd
from tests.inference.conftest import BLUE, DIM_BLUE, LAMBDA_DIR, SCENE_BOXES, SCENE_SIZE, YELLOW

LABELS = list(small_ssd.CLASS_LABELS)


def make_detector(model: Path, **settings) -> od.ObjectDetector:
    settings.setdefault("class_labels", LABELS)
    return od.ObjectDetector(od.DetectorConfig(model_path=str(model), **settings))


def expected_detection(cell, rgb):
    probabilities = small_ssd.class_probabilities(rgb)
    class_id = int(np.argmax(probabilities[1:]))
    return class_id, float(probabilities[1 + class_id]), small_ssd.cell_box(*cell)


def test_finds_every_box_above_threshold_with_class_score_and_location(small_model, scene_image):
    payload = make_detector(small_model).detect_file(str(scene_image))

    width, height = SCENE_SIZE
    assert payload["image_path"] == str(scene_image)
    assert payload["image_size"] == {"width": width, "height": height}
    detections = payload["detections"]
    assert payload["detection_count"] == len(detections) == payload["detections_above_threshold"] == 3
    by_cell = {}
    for detection in detections:
        box = detection["box"]
        cell = (round(box["ymin"] * small_ssd.GRID), round(box["xmin"] * small_ssd.GRID))
        by_cell[cell] = detection
    assert set(by_cell) == set(SCENE_BOXES)
    for cell, rgb in SCENE_BOXES.items():
        class_id, score, box = expected_detection(cell, rgb)
        detection = by_cell[cell]
        assert detection["class_id"] == class_id
        assert detection["label"] == LABELS[class_id]
        assert detection["score"] == pytest.approx(score, abs=0.01)
        assert detection["score"] >= 0.5
        got = [detection["box"][key] for key in ("xmin", "ymin", "xmax", "ymax")]
        assert got == pytest.approx(box, abs=0.01)
        pixels = [detection["box_pixels"][key] for key in ("xmin", "ymin", "xmax", "ymax")]
        assert all(isinstance(value, int) for value in pixels)
        assert pixels == pytest.approx([got[0] * width, got[1] * height, got[2] * width, got[3] * height], abs=1)
    assert by_cell[(1, 2)]["label"] == "blue_box" and by_cell[(2, 0)]["label"] == "yellow_box"
    scores = [detection["score"] for detection in detections]
    assert scores == sorted(scores, reverse=True)
    assert set(payload["timing_ms"]) == {"decode_ms", "preprocess_ms", "forward_ms", "postprocess_ms", "total_ms"}
    assert all(value >= 0 for value in payload["timing_ms"].values())
    parts = sum(value for key, value in payload["timing_ms"].items() if key != "total_ms")
    assert payload["timing_ms"]["total_ms"] >= parts - 0.01


def test_colour_order_is_rgb_like_the_sagemaker_graph_expects(small_model, tmp_path):
    # A pure blue box read as BGR without the swap would look red/yellow to the model.
    image = small_ssd.write_synthetic_image(tmp_path / "blue.png", 512, 512, {(0, 0): BLUE})
    detections = make_detector(small_model).detect_file(str(image))["detections"]
    assert [(d["label"], d["box"]["xmin"], d["box"]["ymin"]) for d in detections] == [("blue_box", 0.0, 0.0)]


def test_threshold_is_respected(small_model, scene_image):
    strict = make_detector(small_model, score_threshold=0.8).detect_file(str(scene_image))
    cells = {(round(d["box"]["ymin"] * 4), round(d["box"]["xmin"] * 4)) for d in strict["detections"]}
    assert cells == {(1, 2), (2, 0)}  # the dim blue box (~0.70) is below 0.8

    # At 0.05 every cell's own anchor reports a class (grey cells ~0.15); the larger anchors are suppressed.
    loose = make_detector(small_model, score_threshold=0.05).detect_file(str(scene_image))
    assert loose["detection_count"] == small_ssd.GRID**2
    assert all(d["score"] >= 0.05 for d in loose["detections"])
    grey_score = small_ssd.class_probabilities((128, 128, 128))[1]
    assert sorted(d["score"] for d in loose["detections"])[0] == pytest.approx(grey_score, abs=0.01)


def test_suppressed_rows_are_not_reported_even_with_high_scores(small_model, scene_image):
    detector = make_detector(small_model, score_threshold=0.05)
    rows = detector.forward(detector.preprocess(od.read_image(str(scene_image))))
    suppressed = rows[(rows[:, 0] == -1) & (rows[:, 1] > 0.5)]
    assert len(suppressed) >= 3, "the model should produce high-scoring suppressed rows (larger anchors)"

    detections = detector.detect_file(str(scene_image))["detections"]
    widths = {round(d["box"]["xmax"] - d["box"]["xmin"], 4) for d in detections}
    assert widths == {0.25}, "only cell-sized anchors survive NMS; larger (suppressed) ones must not appear"


def test_max_detections_caps_the_message_and_says_how_many_passed(small_model, scene_image):
    payload = make_detector(small_model, score_threshold=0.05, max_detections=4).detect_file(str(scene_image))
    assert payload["detection_count"] == 4
    assert payload["detections_above_threshold"] == small_ssd.GRID**2
    assert [d["score"] for d in payload["detections"]][:2] == pytest.approx([0.9998, 0.9998], abs=0.001)


def test_decode_detections_on_handmade_rows():
    rows = np.array(
        [
            [-1, 0.99, 0.1, 0.1, 0.2, 0.2],  # suppressed, high score
            [0, 0.40, 0.0, 0.0, 0.5, 0.5],  # below threshold
            [1, 0.60, -0.1, 0.2, 1.3, 0.8],  # out-of-range coordinates are clamped
            [2, np.nan, 0.0, 0.0, 1.0, 1.0],  # NaN score never passes
            [0, 0.90, 0.25, 0.5, 0.75, 1.0],
            [3, 0.50, 0.0, 0.0, 0.1, 0.1],  # exactly at the threshold: kept
        ],
        dtype=np.float32,
    )
    detections, total = od.decode_detections(rows, 200, 100, 0.5, lambda i: "L{}".format(i))
    assert total == 3
    assert [(d["class_id"], d["label"], d["score"]) for d in detections] == [
        (0, "L0", 0.9),
        (1, "L1", 0.6),
        (3, "L3", 0.5),
    ]
    assert detections[0]["box_pixels"] == {"xmin": 50, "ymin": 50, "xmax": 150, "ymax": 100}
    assert detections[1]["box"] == {"xmin": 0.0, "ymin": 0.2, "xmax": 1.0, "ymax": 0.8}
    assert detections[1]["box_pixels"] == {"xmin": 0, "ymin": 20, "xmax": 200, "ymax": 80}
    json.dumps(detections)  # plain Python types only

    none, total = od.decode_detections(np.full((6132, 6), -1, dtype=np.float32), 10, 10, 0.5, str)
    assert (none, total) == ([], 0)


def test_settings_come_from_the_environment(small_model, tmp_path):
    config = od.DetectorConfig.from_environ(
        {
            "MODEL_PATH": str(small_model),
            "SCORE_THRESHOLD": "0.3",
            "CLASS_LABELS": "blue_box, yellow_box",
            "MAX_DETECTIONS": "7",
            "OUTPUT_TOPIC": "edge/detections",
            "DETECTOR_CONTEXT": "cpu",
        }
    )
    assert (config.model_path, config.score_threshold, config.max_detections) == (str(small_model), 0.3, 7)
    assert config.class_labels == ["blue_box", "yellow_box"]
    assert (config.label_for(1), config.label_for(5)) == ("yellow_box", "class_5")
    assert (config.output_topic, config.context, config.input_size) == ("edge/detections", "cpu", 512)

    defaults = od.DetectorConfig.from_environ({})
    empty = od.DetectorConfig.from_environ({name: "" for name in ("MODEL_PATH", "SCORE_THRESHOLD", "MAX_DETECTIONS")})
    assert (empty.model_path, empty.score_threshold, empty.max_detections) == (defaults.model_path, 0.5, 100)
    assert defaults.model_path == "/ml/od/deploy_model_algo_1"
    assert (defaults.score_threshold, defaults.output_topic, defaults.context) == (0.5, "blog/infer/output", "auto")

    labels_file = tmp_path / "labels.json"
    labels_file.write_text('["a", "b"]')
    assert od.DetectorConfig.from_environ({"CLASS_LABELS_FILE": str(labels_file)}).class_labels == ["a", "b"]


def test_labels_and_input_size_beside_the_model(tmp_path):
    (tmp_path / "class_labels.json").write_text(json.dumps(LABELS))
    (tmp_path / "hyperparams.json").write_text(json.dumps({"image_shape": "300", "num_classes": "2"}))
    config = od.DetectorConfig.from_environ({"MODEL_PATH": str(tmp_path / "deploy_model_algo_1")})
    assert (config.class_labels, config.input_size) == (LABELS, 300)
    overridden = od.DetectorConfig.from_environ({"MODEL_PATH": str(tmp_path / "m"), "MODEL_INPUT_SIZE": "64"})
    assert overridden.input_size == 64


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SCORE_THRESHOLD": "high"}, "SCORE_THRESHOLD must be a number between 0 and 1, got 'high'"),
        ({"SCORE_THRESHOLD": "nan"}, "SCORE_THRESHOLD must be a number between 0 and 1, got NaN"),
        ({"MODEL_INPUT_SIZE": "0"}, "MODEL_INPUT_SIZE must be a positive integer"),
        ({"MODEL_INPUT_SIZE": "big"}, "MODEL_INPUT_SIZE must be a non-negative integer"),
        ({"MAX_DETECTIONS": "-1"}, "MAX_DETECTIONS must be a non-negative integer"),
        ({"DETECTOR_CONTEXT": "tpu"}, "DETECTOR_CONTEXT must be auto, cpu, gpu or gpu:<n>, got 'tpu'"),
        ({"CLASS_LABELS_FILE": "/nonexistent/labels.json"}, "CLASS_LABELS_FILE /nonexistent/labels.json"),
    ],
)
def test_bad_settings_name_the_variable(environ, message):
    with pytest.raises(od.DetectorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        od.DetectorConfig.from_environ(environ)


@pytest.mark.parametrize(("value", "expected"), [("1.5", 1.0), ("-0.2", 0.0), ("0", 0.0), (0.75, 0.75)])
def test_out_of_range_thresholds_are_clamped(value, expected):
    assert od.DetectorConfig.from_environ({"SCORE_THRESHOLD": value}).score_threshold == expected


def test_missing_or_incomplete_model_is_a_clear_error(small_model, tmp_path):
    with pytest.raises(od.DetectorError, match=r"model file not found: .*/absent-symbol.json \(MODEL_PATH="):
        make_detector(tmp_path / "absent")

    # A params file that lacks the class head: named, not a crash deep in MXNet.
    symbol, arg_params, aux_params = mx.model.load_checkpoint(str(small_model), 0)
    del arg_params["cls_pred_conv_weight"]
    mx.model.save_checkpoint(str(tmp_path / "partial"), 0, symbol, arg_params, aux_params)
    with pytest.raises(od.DetectorError, match="parameters missing from .*partial-0000.params: .*cls_pred_conv_weight"):
        make_detector(tmp_path / "partial")


def test_context_follows_the_hardware():
    expected = mx.gpu(0) if mx.context.num_gpus() > 0 else mx.cpu()
    assert od.select_context("auto") == expected
    assert od.select_context("cpu") == mx.cpu()
    with pytest.raises(od.DetectorError, match="asks for GPU 99 but MXNet sees"):
        od.select_context("gpu:99")


def test_annotated_png_shows_the_boxes(small_model, scene_image, tmp_path):
    payload = make_detector(small_model).detect_file(str(scene_image))
    out = od.write_annotated_png(str(scene_image), payload, str(tmp_path / "annotated.png"))

    original = cv2.imread(str(scene_image))
    annotated = cv2.imread(out)
    assert annotated.shape == original.shape
    changed = np.any(annotated != original, axis=2)
    for detection in payload["detections"]:
        box = detection["box_pixels"]
        # The right edge of each box is drawn (labels sit at the top-left, so test the side).
        mid_y = (box["ymin"] + box["ymax"]) // 2
        assert changed[mid_y, min(box["xmax"], original.shape[1] - 1)]
    assert not changed[5:100, 180:300].any(), "no detection there, so nothing drawn"
    with pytest.raises(od.DetectorError, match="must be a .png path"):
        od.write_annotated_png(str(scene_image), payload, str(tmp_path / "annotated.jpg"))


def test_command_line_prints_results_and_writes_the_picture(small_model, scene_image, tmp_path):
    out = tmp_path / "cli.png"
    env = dict(os.environ, CLASS_LABELS=",".join(LABELS))
    result = subprocess.run(
        [sys.executable, str(LAMBDA_DIR / "object_detector.py"), "--model", str(small_model)]
        + ["--image", str(scene_image), "--image", str(tmp_path / "missing.jpg"), "--annotate", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr  # the second image is missing
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert {d["label"] for d in first["detections"]} == {"blue_box", "yellow_box"}
    assert second["error"].startswith("image file not found") and second["image_path"].endswith("missing.jpg")
    assert cv2.imread(str(out)).shape == (SCENE_SIZE[1], SCENE_SIZE[0], 3)


@pytest.mark.parametrize("version", ["3.7", "3.8"])
def test_lambda_code_is_valid_for_greengrass_v1_pythons(version):
    interpreter = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(interpreter.glob(f"{version}.*/bin/python{version}"))
    if not candidates:
        pytest.skip(f"no python{version} interpreter here to compile the Lambda code with")
    sources = sorted(str(path) for path in LAMBDA_DIR.glob("*.py"))
    compile_all = "import sys\nfor f in sys.argv[1:]: compile(open(f).read(), f, 'exec')"
    result = subprocess.run([str(candidates[-1]), "-c", compile_all, *sources], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_pure_colours_used_by_the_scene_are_what_the_model_expects():
    # Guards the scene itself: if the weights changed, the expectations above would silently shift.
    assert small_ssd.class_probabilities(BLUE)[1] > 0.99
    assert small_ssd.class_probabilities(YELLOW)[2] > 0.99
    assert 0.6 < small_ssd.class_probabilities(DIM_BLUE)[1] < 0.8
    assert small_ssd.class_probabilities((128, 128, 128))[0] > 0.5
