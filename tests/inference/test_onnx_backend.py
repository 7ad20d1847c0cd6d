"""The ONNX Runtime backend: MXNet's MultiBoxDetection in numpy, the ssd_model_onnx conversion (deterministic,
verified, idempotent, check mode, bad input) and the detector's answers on ONNX Runtime against MXNet's, on the
hand-weighted small SSD and on the seed's real SSD512 graph (random weights) with its 1080p frames."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import mxnet as mx
import numpy as np
import object_detector as od
import pytest

from tests.inference import seed_model
from tests.roles.playbook_json import run_module_process

LABELS = ["blue_box", "yellow_box"]


def mxnet_multibox(probabilities, offsets, anchors, **settings):
    return mx.nd.contrib.MultiBoxDetection(
        mx.nd.array(probabilities[np.newaxis]),
        mx.nd.array(offsets[np.newaxis]),
        mx.nd.array(anchors[np.newaxis]),
        **{key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()},
    ).asnumpy()[0]


def random_head(seed: int, anchors: int, classes: int):
    rng = np.random.RandomState(seed)
    logits = rng.normal(0, 2, (classes + 1, anchors)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=0)
    corners = rng.uniform(0, 0.9, (anchors, 2)).astype(np.float32)
    sides = rng.uniform(0.02, 0.3, (anchors, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + sides], axis=1)
    offsets = rng.normal(0, 1, anchors * 4).astype(np.float32)
    return probabilities.astype(np.float32), offsets, boxes


@pytest.mark.parametrize(
    "settings",
    [
        {"nms_threshold": 0.45, "force_suppress": True, "nms_topk": 400},  # the seed's
        {"nms_threshold": 0.5, "force_suppress": False, "nms_topk": -1},  # MXNet's defaults
        {"nms_threshold": 0.3, "force_suppress": False, "nms_topk": 50, "threshold": 0.2, "clip": False},
        {"nms_threshold": 0.45, "force_suppress": True, "nms_topk": 400, "variances": [0.2, 0.2, 0.1, 0.1]},
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_multibox_detection_is_mxnets(settings, seed):
    probabilities, offsets, anchors = random_head(seed, anchors=1500, classes=3)
    expected = mxnet_multibox(probabilities, offsets, anchors, **settings)
    rows = od.multibox_detection(probabilities, offsets, anchors, **settings)
    kept_expected = expected[expected[:, 0] >= 0]
    kept = rows[rows[:, 0] >= 0]
    assert len(kept) > 20  # enough survive for the comparison to mean something
    assert kept[:, :2].tolist() == kept_expected[:, :2].tolist()  # same classes and scores, same order
    np.testing.assert_allclose(kept[:, 2:], kept_expected[:, 2:], atol=2e-6)
    # Every row MXNet reports (suppressed ones as class -1) is there, in the same order.
    assert len(rows) == int((expected[:, 1] >= settings.get("threshold", 0.01)).sum())


def test_numpy_multibox_detection_with_nothing_above_the_threshold():
    probabilities = np.full((3, 10), 1 / 3, dtype=np.float32)
    rows = od.multibox_detection(probabilities, np.zeros(40, np.float32), np.zeros((10, 4), np.float32), threshold=0.5)
    assert rows.shape == (0, 6)
    assert od.decode_detections(rows, 640, 480, 0.5, str)[0] == []


def test_execution_providers_follow_the_preference_and_the_context():
    everything = [
        "CPUExecutionProvider",
        "CUDAExecutionProvider",
        "TensorrtExecutionProvider",
        "AzureExecutionProvider",
    ]
    assert od.select_onnx_providers("auto", everything) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert od.select_onnx_providers("cpu", everything) == ["CPUExecutionProvider"]
    assert od.select_onnx_providers("gpu:1", everything) == [
        ("TensorrtExecutionProvider", {"device_id": "1"}),
        ("CUDAExecutionProvider", {"device_id": "1"}),
        "CPUExecutionProvider",
    ]
    assert od.select_onnx_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(od.DetectorError, match="asks for a GPU but this onnxruntime offers CPUExecutionProvider"):
        od.select_onnx_providers("gpu", ["CPUExecutionProvider"])


def test_backend_setting_is_checked():
    with pytest.raises(od.DetectorError, match="DETECTOR_BACKEND must be one of auto, onnxruntime, mxnet, got 'tf'"):
        od.DetectorConfig.from_environ({"DETECTOR_BACKEND": "tf"})


def convert(src: Path, dest: Path, tmp_path: Path, **options) -> dict:
    args = {"src": str(src), "dest": str(dest), **options}
    return run_module_process("ssd_model_onnx", args, tmp_path / "args.json", timeout=600)


@pytest.fixture(scope="module")
def small_onnx(small_model, tmp_path_factory) -> Path:
    """The small SSD's folder with its converted <prefix>.onnx beside the MXNet checkpoint."""
    work = tmp_path_factory.mktemp("small-onnx")
    result = convert(small_model.parent, work / "model.onnx.tar.gz", work)
    assert result.get("changed") is True, result
    with tarfile.open(work / "model.onnx.tar.gz") as archive:
        archive.extractall(small_model.parent, filter="data")
    return small_model


@pytest.fixture(scope="module")
def seed_conversion(seed_random_model, tmp_path_factory):
    """(source model.tar.gz, converted archive, the module's result): the seed's SSD512 converted once for the
    module, its two 1080p frames as verification images (a conversion of it takes about 40 s)."""
    work = tmp_path_factory.mktemp("seed-onnx")
    source = work / "model.tar.gz"
    with tarfile.open(source, "w:gz") as archive:
        for path in sorted(seed_random_model.parent.iterdir()):
            archive.add(path, arcname=path.name)
    images = [str(path) for path in seed_model.seed_images()]
    result = convert(source, work / "model.onnx.tar.gz", work, verify_images=images)
    return source, work / "model.onnx.tar.gz", result


def test_conversion_is_deterministic_verified_and_idempotent(small_model, tmp_path):
    first = convert(small_model.parent, tmp_path / "a.onnx", tmp_path)
    assert first["changed"] is True and first["converted"] is True, first
    assert first["conversion"]["anchors"] == 32 and first["conversion"]["classes"] == 2
    assert first["conversion"]["detection"] == {
        "threshold": 0.01,
        "clip": True,
        "variances": [0.1, 0.1, 0.2, 0.2],
        "nms_threshold": 0.45,
        "force_suppress": True,
        "nms_topk": 400,
    }
    verification = first["verification"]
    assert verification["images"] == 3 and verification["detections"] > 0
    assert verification["max_score_difference"] <= 1e-3 and verification["max_box_difference"] <= 1e-3
    # A second conversion into another file gives the same bytes.
    again = convert(small_model.parent, tmp_path / "b.onnx", tmp_path, force=True)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert again["sha256"] == first["sha256"]
    # Up to date: nothing converted, nothing changed.
    before = (tmp_path / "a.onnx").stat().st_mtime_ns
    unchanged = convert(small_model.parent, tmp_path / "a.onnx", tmp_path)
    assert unchanged["changed"] is False and unchanged["converted"] is False, unchanged
    assert unchanged["verification"] == verification
    assert (tmp_path / "a.onnx").stat().st_mtime_ns == before
    # Other verification images are another conversion record (kept in the model's metadata): converted again.
    image = str(seed_model.seed_images()[0])
    other_images = convert(small_model.parent, tmp_path / "a.onnx", tmp_path, verify_images=[image])
    assert other_images["changed"] is True and other_images["converted"] is True, other_images
    assert other_images["verification"]["images"] == 1


def test_check_mode_converts_and_verifies_but_writes_nothing(small_model, tmp_path):
    result = convert(small_model.parent, tmp_path / "model.onnx.tar.gz", tmp_path, _ansible_check_mode=True)
    assert result["changed"] is True and result["verification"]["images"] == 3, result
    assert not (tmp_path / "model.onnx.tar.gz").exists()


def test_archive_holds_the_model_its_record_and_the_side_files(seed_conversion, tmp_path):
    """The SageMaker model.tar.gz in, an archive the detector unpacks out: seed frames as verification images."""
    source, converted, result = seed_conversion
    assert result["changed"] is True, result
    assert result["conversion"]["anchors"] == 6132 and result["conversion"]["input_size"] == 512
    assert result["verification"]["images"] == 2 and result["verification"]["detections"] > 100
    with tarfile.open(converted) as archive:
        names = archive.getnames()
        record = json.load(archive.extractfile("conversion.json"))
    assert names == ["conversion.json", "deploy_model_algo_1.onnx", "hyperparams.json"]
    assert record["source_sha256"] == result["source_sha256"] and record["verification"] == result["verification"]
    # Converting it again is not needed: the same record means up to date.
    images = [str(path) for path in seed_model.seed_images()]
    unchanged = convert(source, converted, tmp_path, verify_images=images)
    assert unchanged["changed"] is False and unchanged["converted"] is False, unchanged


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dest": "model.zip"}, "dest: model.zip must end in .onnx or .tar.gz"),
        ({"prefix": "../model"}, "prefix: '../model' is not a checkpoint prefix"),
        ({"epoch": 3}, "has no deploy_model_algo_1-0003.params at its root (prefix deploy_model_algo_1, epoch 3)"),
        ({"input_size": 7}, "input_size: expected 32..4096 pixels, got 7"),
        ({"score_tolerance": -1}, "score_tolerance: expected a number in 0..1, got -1"),
        ({"verify_images": ["/nonexistent.jpg"]}, "verify_images: not a file: /nonexistent.jpg"),
    ],
)
def test_bad_input_is_named_before_anything_is_written(small_model, tmp_path, options, message):
    args = {"dest": str(tmp_path / "model.onnx"), **options}
    result = convert(small_model.parent, Path(args.pop("dest")), tmp_path, **args)
    assert result.get("failed") is True and message in result["msg"], result
    assert list(tmp_path.glob("model*")) == []


def test_weights_mxnet_cannot_read_are_refused_in_one_line(small_model, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "deploy_model_algo_1-symbol.json").write_bytes(Path(f"{small_model}-symbol.json").read_bytes())
    (folder / "deploy_model_algo_1-0000.params").write_bytes(b"not MXNet weights" * 64)
    result = convert(folder, tmp_path / "out.onnx", tmp_path)
    assert result.get("failed") is True, result
    assert result["msg"].startswith(
        f"{folder}: cannot load the checkpoint deploy_model_algo_1-symbol.json / -0000.params"
    )
    assert "Traceback" not in result["msg"] and "\n" not in result["msg"], result["msg"]
    assert not (tmp_path / "out.onnx").exists()


def test_a_graph_that_is_not_an_ssd_is_refused_naming_its_output_layer(tmp_path):
    data = mx.sym.var("data")
    net = mx.sym.FullyConnected(mx.sym.flatten(data), num_hidden=4, name="classifier")
    mx.model.save_checkpoint(
        str(tmp_path / "deploy_model_algo_1"),
        0,
        net,
        {"classifier_weight": mx.nd.zeros((4, 3 * 32 * 32)), "classifier_bias": mx.nd.zeros(4)},
        {},
    )
    result = convert(tmp_path, tmp_path / "out.onnx", tmp_path, input_size=32)
    assert result.get("failed") is True, result
    assert (
        "the graph's output is layer 'classifier' (FullyConnected); expected _contrib_MultiBoxDetection"
        in (result["msg"])
    )


def answers(detector: od.ObjectDetector, images) -> list:
    out = []
    for image in images:
        payload = detector.detect_file(str(image))
        out.append([(d["class_id"], d["label"], d["score"], d["box_pixels"]) for d in payload["detections"]])
    return out


def test_small_model_answers_the_same_on_both_backends(small_onnx, scene_image):
    on_onnx = od.ObjectDetector(od.DetectorConfig(model_path=str(small_onnx), class_labels=LABELS))
    assert on_onnx.inference == {"backend": "onnxruntime", "device": "CPUExecutionProvider"}  # auto: .onnx present
    on_mxnet = od.ObjectDetector(od.DetectorConfig(model_path=str(small_onnx), class_labels=LABELS, backend="mxnet"))
    found = answers(on_onnx, [scene_image])
    assert found == answers(on_mxnet, [scene_image])
    assert {label for _, label, _, _ in found[0]} == set(LABELS)
    payload = on_onnx.detect_file(str(scene_image))
    assert payload["inference"] == {"backend": "onnxruntime", "device": "CPUExecutionProvider"}


def test_onnx_backend_refuses_a_model_converted_for_another_size(small_onnx):
    with pytest.raises(od.DetectorError, match=r"its input is \[1, 3, 512, 512\] but MODEL_INPUT_SIZE is 300"):
        od.ObjectDetector(od.DetectorConfig(model_path=str(small_onnx), input_size=300, backend="onnxruntime"))


def test_missing_onnx_model_is_named(small_model, tmp_path):
    prefix = tmp_path / "deploy_model_algo_1"
    with pytest.raises(od.DetectorError, match=f"model file not found: {prefix}.onnx"):
        od.ObjectDetector(od.DetectorConfig(model_path=str(prefix), backend="onnxruntime"))


@pytest.mark.slow
def test_seed_graph_answers_the_same_on_both_backends(seed_conversion, seed_random_model, tmp_path):
    """The seed's SSD512 on its 1080p frames: every detection above 0.2 the same on ONNX Runtime as on MXNet."""
    images = [str(path) for path in seed_model.seed_images()]
    _source, converted, result = seed_conversion
    assert result["changed"] is True, result
    folder = tmp_path / "model"
    folder.mkdir()
    with tarfile.open(converted) as archive:
        archive.extractall(folder, filter="data")
    prefix = str(folder / seed_model.SEED_PREFIX_NAME)
    on_onnx = od.ObjectDetector(od.DetectorConfig(model_path=prefix, class_labels=LABELS, score_threshold=0.2))
    assert on_onnx.anchor_count == 6132 and on_onnx.inference["backend"] == "onnxruntime"
    mxnet_prefix = str(seed_random_model)
    on_mxnet = od.ObjectDetector(od.DetectorConfig(model_path=mxnet_prefix, class_labels=LABELS, score_threshold=0.2))
    onnx_answers, mxnet_answers = answers(on_onnx, images), answers(on_mxnet, images)
    assert all(len(found) > 10 for found in mxnet_answers)
    for onnx_found, mxnet_found in zip(onnx_answers, mxnet_answers, strict=True):
        assert [(c, label) for c, label, _, _ in onnx_found] == [(c, label) for c, label, _, _ in mxnet_found]
        assert [score for _, _, score, _ in onnx_found] == pytest.approx([s for _, _, s, _ in mxnet_found], abs=1e-3)
        # 2 pixels of 1920: the conversion's box tolerance (0.001 of the side).
        for (_, _, _, onnx_box), (_, _, _, mxnet_box) in zip(onnx_found, mxnet_found, strict=True):
            assert list(onnx_box.values()) == pytest.approx(list(mxnet_box.values()), abs=2)
