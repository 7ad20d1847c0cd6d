"""The video pipeline end to end on real MXNet and real OpenCV: a generated video through capture -> detector.

Nothing in MXNet, OpenCV or the video files is replaced. The only stand-ins are the
message transport (a ``publish(topic, bytes)`` list collector, as in tests/inference)
and, to force drops, ``SlowDetector``: a test double *wrapping the real detector*
that sleeps before each real forward pass, so the detector is slower than the stream.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import frame_capture
import numpy as np
import object_detector as od
import pytest
import video_pipeline as vp

from tests.inference import small_ssd
from tests.video.conftest import FRAME_SIZE, LABELS, expected_cells, write_video

DEADLINE_S = 60


class Messages:
    """Thread-safe collector of published messages, decoded."""

    def __init__(self):
        self._lock = threading.Lock()
        self.items: list[tuple[str, dict]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.items.append((topic, json.loads(payload.decode("utf-8"))))

    def results(self, topic="blog/infer/output"):
        with self._lock:
            return [p for t, p in self.items if t == topic and "error" not in p]

    def errors(self):
        with self._lock:
            return [p for _, p in self.items if "error" in p]


class SlowDetector:
    """Test double around the real ObjectDetector: sleeps ``delay_s`` before each real forward pass."""

    def __init__(self, detector: od.ObjectDetector, delay_s: float):
        self.real = detector
        self.config = detector.config
        self.delay_s = delay_s

    def preprocess(self, image):
        return self.real.preprocess(image)

    def forward(self, batch):
        time.sleep(self.delay_s)
        return self.real.forward(batch)


def real_detector(model: Path) -> od.ObjectDetector:
    return od.ObjectDetector(od.DetectorConfig(model_path=str(model), class_labels=LABELS))


def cells_of(payload: dict) -> dict[tuple[int, int], str]:
    cells = {}
    for detection in payload["detections"]:
        box = detection["box"]
        cell = (round(box["ymin"] * small_ssd.GRID), round(box["xmin"] * small_ssd.GRID))
        assert box["xmax"] - box["xmin"] == pytest.approx(1 / small_ssd.GRID, abs=0.01)
        assert box["ymax"] - box["ymin"] == pytest.approx(1 / small_ssd.GRID, abs=0.01)
        cells[cell] = detection["label"]
    return cells


def run_with_deadline(pipeline: vp.VideoPipeline) -> dict:
    """Run in a thread; stop it and fail if it has not finished by the deadline."""
    result = {}
    worker = threading.Thread(target=lambda: result.update(pipeline.run()), daemon=True)
    worker.start()
    worker.join(DEADLINE_S)
    if worker.is_alive():
        pipeline.stop()
        worker.join(10)
        pytest.fail(f"pipeline did not finish within {DEADLINE_S} s: {pipeline.stats()}")
    return result


def assert_accounting(stats: dict, queue_size: int) -> None:
    assert stats["frames_captured"] == stats["frames_processed"] + stats["frames_dropped"] + stats["frames_failed"]
    assert stats["frames_dropped"] == stats["dropped_before_preprocess"] + stats["dropped_before_forward"]
    assert stats["queue_high_water"]["raw"] <= queue_size
    assert stats["queue_high_water"]["ready"] <= queue_size


def test_every_processed_frame_has_the_right_boxes_timestamps_and_latency(small_model, video_40):
    messages = Messages()
    settings = vp.CaptureSettings(str(video_40), rate=15)
    pipeline = vp.VideoPipeline(settings, messages, detector_factory=lambda: real_detector(small_model))

    stats = run_with_deadline(pipeline)

    assert stats["frames_captured"] == 40
    assert_accounting(stats, 1)
    assert stats["frames_failed"] == 0 and messages.errors() == []
    results = messages.results()
    assert len(results) == stats["frames_processed"] >= 30, stats  # ~30 ms forward at 15 fps: few or no drops
    indices = [payload["frame_index"] for payload in results]
    assert indices == sorted(set(indices)) and indices[-1] == 39  # in order, none twice, the newest kept
    for payload in results:
        assert cells_of(payload) == expected_cells(payload["frame_index"]), payload["frame_index"]
        assert payload["source"] == str(video_40)
        assert payload["image_size"] == {"width": FRAME_SIZE[0], "height": FRAME_SIZE[1]}
        assert payload["detection_count"] == 2
        assert all(d["score"] >= 0.5 for d in payload["detections"])
        assert set(payload["timing_ms"]) == {"preprocess_ms", "forward_ms", "postprocess_ms"}
        forward = payload["timing_ms"]["forward_ms"]
        assert 0 < forward <= payload["latency_ms"] < 5000
        assert payload["capture_timestamp"] <= payload["timestamp"]
    captured = [payload["capture_timestamp"] for payload in results]
    assert captured == sorted(captured)
    # Paced at 15 fps: capture times of consecutive frames are about 1/15 s apart, not a burst.
    spacing = np.diff(captured) / np.diff(indices)
    assert np.median(spacing) == pytest.approx(1 / 15, rel=0.3)
    published = [payload["timestamp"] for payload in results]
    assert published == sorted(published)


@pytest.mark.parametrize("queue_size", [1, 2])
def test_a_slow_detector_drops_the_oldest_frames_and_counts_them(small_model, video_40, queue_size):
    messages = Messages()
    settings = vp.CaptureSettings(str(video_40), rate=50, queue_size=queue_size)
    pipeline = vp.VideoPipeline(
        settings, messages, detector_factory=lambda: SlowDetector(real_detector(small_model), 0.1)
    )

    stats = run_with_deadline(pipeline)

    assert stats["frames_captured"] == 40
    assert_accounting(stats, queue_size)
    assert stats["frames_dropped"] >= 15, stats  # 50 fps in, < 10 fps out
    assert pipeline.ready.high_water == queue_size  # the queue before the slow stage did fill, no further
    results = messages.results()
    assert len(results) == stats["frames_processed"]
    indices = [payload["frame_index"] for payload in results]
    assert indices == sorted(set(indices))
    assert indices[-1] == 39, "dropping the oldest keeps the stream's last frame"
    for payload in results:
        assert cells_of(payload) == expected_cells(payload["frame_index"])
    # Every captured frame is either published or logged as dropped, exactly once.
    dropped = [index for queue in (pipeline.raw, pipeline.ready) for index, _ in queue.drop_log]
    assert sorted(dropped + indices) == list(range(40))
    for queue in (pipeline.raw, pipeline.ready):
        log = list(queue.drop_log)
        assert [index for index, _ in log] == sorted(index for index, _ in log), "drops happen oldest first"
        assert all(dropped_index < arriving for dropped_index, arriving in log)
    # A queue's contents are always the newest puts not yet taken, so when it is full, dropping the oldest
    # removes the frame put exactly queue_size puts before the one arriving (dropping any other would not).
    raw_dropped = {index for index, _ in pipeline.raw.drop_log}
    put_order = {"raw": list(range(40)), "ready": [index for index in range(40) if index not in raw_dropped]}
    for name, queue in (("raw", pipeline.raw), ("ready", pipeline.ready)):
        position = {index: place for place, index in enumerate(put_order[name])}
        assert all(position[arriving] - position[index] == queue_size for index, arriving in queue.drop_log), name
    # The running count in each message never decreases and ends at most at the total.
    counts = [payload["frames_dropped"] for payload in results]
    assert counts == sorted(counts) and counts[-1] <= stats["frames_dropped"]
    # A frame waited at most for the forward pass in progress and the queue ahead of it.
    assert max(payload["latency_ms"] for payload in results) < 1000 * (0.1 + 0.05) * (2 * queue_size + 2)


def test_missing_source_is_reported_retried_with_growing_backoff_and_recovers(small_model, tmp_path):
    messages = Messages()
    path = tmp_path / "late.avi"
    settings = vp.CaptureSettings(str(path), rate=30, retry_initial_s=0.05, retry_max_s=0.4)
    pipeline = vp.VideoPipeline(settings, messages, detector_factory=lambda: real_detector(small_model))
    result = {}
    worker = threading.Thread(target=lambda: result.update(pipeline.run()), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(messages.errors()) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        errors = messages.errors()
        assert len(errors) >= 6 and worker.is_alive(), "still running while the source is missing"
        assert all(e["error"] == f"video source not found: {path}" and e["source"] == str(path) for e in errors)
        assert [e["attempt"] for e in errors[:6]] == [1, 2, 3, 4, 5, 6]
        delays = [e["retry_in_s"] for e in errors]
        # 0.05 doubling (jitter takes off at most 25 %) until the 0.4 cap: 0.05, 0.1, 0.2, 0.4, 0.4, ...
        assert delays[0] < delays[1] < delays[2] < delays[3]
        assert all(0.3 - 1e-9 <= delay <= 0.4 for delay in delays[3:])
        assert delays[0] == pytest.approx(0.05, rel=0.26)

        # The camera "appears": a complete file is moved into place.
        write_video(tmp_path / "staging.avi", 12)
        os.replace(tmp_path / "staging.avi", path)
        worker.join(DEADLINE_S)
        assert not worker.is_alive(), "the pipeline should end with the file"
    finally:
        pipeline.stop()
        worker.join(10)

    assert result["frames_captured"] == 12
    assert_accounting(result, 1)
    results = messages.results()
    assert results and results[-1]["frame_index"] == 11
    for payload in results:
        assert cells_of(payload) == expected_cells(payload["frame_index"])
    errors_before = len(messages.errors())
    assert result["errors_published"] == errors_before  # nothing went wrong after recovery


def test_files_mode_hands_frames_to_the_single_image_detector(small_model, video_40, tmp_path):
    """The split fallback: capture writes JPEGs and publishes paths that the detector Lambda's handler reads."""
    frames = Messages()
    settings = vp.CaptureSettings(
        str(video_40), rate=0, mode="files", frame_dir=str(tmp_path / "frames"), frame_ring=50, frame_topic="in"
    )
    stats = run_with_deadline(vp.VideoPipeline(settings, frames))
    assert stats["frames_captured"] == stats["frames_processed"] == 40
    events = frames.results("in")
    assert [event["frame_index"] for event in events] == list(range(40))

    detections = Messages()
    service = od.InferenceService(
        detections, lambda: od.DetectorConfig(model_path=str(small_model), class_labels=LABELS)
    )
    for event in events[::7]:
        payload = service.handle(event)
        assert "error" not in payload, payload
        assert cells_of(payload) == expected_cells(event["frame_index"])


def test_files_mode_reuses_a_bounded_ring_of_file_names(video_40, tmp_path):
    frames = Messages()
    settings = vp.CaptureSettings(str(video_40), mode="files", frame_dir=str(tmp_path / "ring"), frame_ring=4)
    run_with_deadline(vp.VideoPipeline(settings, frames))
    assert sorted(p.name for p in (tmp_path / "ring").iterdir()) == [f"frame-{i:03d}.jpg" for i in range(4)]


def test_a_detector_that_cannot_load_is_reported_and_retried(small_model, video_40, tmp_path):
    messages = Messages()
    settings = vp.CaptureSettings(str(video_40), rate=0, retry_initial_s=0.02, retry_max_s=0.05)
    missing = tmp_path / "not-synced-yet" / "deploy_model_algo_1"
    attempts = []

    def factory():
        attempts.append(time.monotonic())
        prefix = missing if len(attempts) < 3 else small_model  # the ML resource arrives on the third try
        return real_detector(prefix)

    stats = run_with_deadline(vp.VideoPipeline(settings, messages, detector_factory=factory))
    errors = messages.errors()
    assert len(errors) == 2 and all(e["error"].startswith("detector not ready: model file not found") for e in errors)
    assert stats["frames_processed"] >= 1 and stats["frames_captured"] == 40
    assert_accounting(stats, 1)


def test_an_unreachable_rtsp_stream_is_reported_and_retried_until_stopped(tmp_path):
    messages = Messages()
    # Port 9 on loopback: nothing listens, so the connection is refused at once.
    url = "rtsp://127.0.0.1:9/stream"
    settings = vp.CaptureSettings(url, mode="files", frame_dir=str(tmp_path), retry_initial_s=0.05)
    pipeline = vp.VideoPipeline(settings, messages)
    worker = threading.Thread(target=pipeline.run, daemon=True)
    worker.start()
    deadline = time.monotonic() + DEADLINE_S
    while len(messages.errors()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pipeline.stop()
    worker.join(DEADLINE_S)
    assert not worker.is_alive(), "stop() ends the retry loop"
    errors = messages.errors()
    assert len(errors) >= 2
    assert errors[0]["error"] == "cannot open video source rtsp://127.0.0.1:9/stream (OpenCV could not read it)"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"source": ""}, "CAPTURE_SOURCE must be /dev/videoN, a video file path or an rtsp:// URL"),
        ({"source": "ftp://cam/1"}, "CAPTURE_SOURCE URL scheme not supported"),
        ({"source": "a.avi", "rate": "fast"}, "CAPTURE_RATE must be a number, got 'fast'"),
        ({"source": "a.avi", "rate": -1}, "CAPTURE_RATE must be at least 0.0, got -1"),
        ({"source": "a.avi", "queue_size": 3}, "CAPTURE_QUEUE_SIZE must be 1..2, got 3"),
        ({"source": "a.avi", "mode": "shm"}, "CAPTURE_MODE must be one of inprocess, files, got 'shm'"),
        ({"source": "a.avi", "retry_initial_s": 2, "retry_max_s": 1}, "CAPTURE_RETRY_MAX_S must be at least 2"),
    ],
)
def test_bad_settings_name_the_setting(settings, message):
    with pytest.raises(vp.SettingsError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        vp.CaptureSettings(**settings)


def test_settings_from_the_environment():
    settings = vp.CaptureSettings.from_environ(
        {
            "CAPTURE_SOURCE": "/dev/video0",
            "CAPTURE_RATE": "7.5",
            "CAPTURE_QUEUE_SIZE": "2",
            "CAPTURE_LOOP": "1",
            "CAPTURE_MODE": "files",
            "OUTPUT_TOPIC": "out",
            "CAPTURE_FRAME_TOPIC": "",
        }
    )
    assert (settings.source_kind, settings.rate, settings.queue_size, settings.loop) == ("camera", 7.5, 2, True)
    assert (settings.mode, settings.output_topic, settings.frame_topic) == ("files", "out", od.DEFAULT_INPUT_TOPIC)
    with pytest.raises(vp.SettingsError, match="CAPTURE_LOOP must be 1 or 0"):
        vp.CaptureSettings.from_environ({"CAPTURE_SOURCE": "x.avi", "CAPTURE_LOOP": "yes"})


def test_missing_camera_device_is_a_source_error():
    source = frame_capture.FrameSource("/dev/video99", rate=5)
    assert source.live and source.kind == "camera"
    with pytest.raises(frame_capture.SourceError, match="camera device not found: /dev/video99"):
        source.open()


def test_backoff_grows_is_capped_and_jittered():
    import random

    backoff = frame_capture.Backoff(1.0, 8.0, jitter=0.25, rng=random.Random(1))  # noqa: S311 - jitter
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays[0] < delays[1] < delays[2] < delays[3]
    assert all(6.0 <= delay <= 8.0 for delay in delays[3:])
    assert len({round(delay, 6) for delay in delays[3:]}) > 1, "jitter spreads capped delays"
    backoff.reset()
    assert 0.75 <= backoff.next_delay() <= 1.0


def test_drop_oldest_queue_never_exceeds_its_size():
    queue = frame_capture.DropOldestQueue(2, "q")
    frames = [frame_capture.Frame(i, np.zeros((1, 1, 3), np.uint8), 0.0, 0.0) for i in range(5)]
    dropped = [queue.put(frame) for frame in frames]
    assert [frame.index if frame else None for frame in dropped] == [None, None, 0, 1, 2]
    assert len(queue) == 2 and queue.high_water == 2 and queue.dropped == 3 and queue.put_count == 5
    assert [queue.get(0).index, queue.get(0).index, queue.get(0)] == [3, 4, None]
    assert list(queue.drop_log) == [(0, 2), (1, 3), (2, 4)]


def test_a_looped_file_continues_the_frame_count_until_the_frame_limit(small_model, tmp_path):
    video = write_video(tmp_path / "short.avi", 8)
    messages = Messages()
    settings = vp.CaptureSettings(str(video), rate=0, loop=True, max_frames=30)
    pipeline = vp.VideoPipeline(settings, messages, detector_factory=lambda: real_detector(small_model))
    stats = run_with_deadline(pipeline)
    assert stats["frames_captured"] == 30
    assert_accounting(stats, 1)
    results = messages.results()
    assert results[-1]["frame_index"] == 29
    for payload in results:
        # Frame i of the stream is frame i % 8 of the file; 8 is a multiple of the boxes' 4-frame cycle.
        assert cells_of(payload) == expected_cells(payload["frame_index"] % 8)


def test_a_live_stream_is_sampled_at_the_rate_and_reopened_when_it_ends(small_model, video_40):
    """An HTTP stream (FFmpeg, like RTSP a live source): grabbed as fast as it comes, decoded only at the rate."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video_40.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{video_40.name}"
    messages = Messages()
    settings = vp.CaptureSettings(url, rate=20, retry_initial_s=0.05, retry_max_s=0.1)
    pipeline = vp.VideoPipeline(settings, messages, detector_factory=lambda: real_detector(small_model))
    worker = threading.Thread(target=pipeline.run, daemon=True)
    worker.start()
    try:
        assert wait_until(lambda: len(messages.errors()) >= 2 and len(messages.results()) >= 2)
    finally:
        pipeline.stop()
        worker.join(DEADLINE_S)
        server.shutdown()
    assert not worker.is_alive()
    stats = pipeline.stats()
    assert_accounting(stats, 1)
    # Served faster than 20 fps: most frames are grabbed and skipped undecoded, never counted as captured.
    assert stats["frames_skipped_for_rate"] > stats["frames_captured"] > 0, stats
    assert {e["error"] for e in messages.errors()} == {f"video source {url} stopped giving frames"}
    for payload in messages.results():
        assert sorted(d["label"] for d in payload["detections"]) == ["blue_box", "yellow_box"]


def wait_until(condition, timeout=DEADLINE_S):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


class PriorityProbe:
    """Test double around the real detector recording each calling thread's niceness."""

    def __init__(self, detector: od.ObjectDetector):
        self.real = detector
        self.config = detector.config
        self.nice = {}

    def _record(self, stage):
        self.nice.setdefault(stage, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    def preprocess(self, image):
        self._record("preprocess")
        return self.real.preprocess(image)

    def forward(self, batch):
        self._record("forward")
        return self.real.forward(batch)


@pytest.mark.parametrize("stage_nice", [0, 10])
def test_decode_and_preprocess_yield_the_cpu_to_the_forward_pass(small_model, video_40, stage_nice):
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    probe = PriorityProbe(real_detector(small_model))
    settings = vp.CaptureSettings(str(video_40), rate=0, max_frames=5, stage_nice=stage_nice)
    run_with_deadline(vp.VideoPipeline(settings, Messages(), detector_factory=lambda: probe))
    assert probe.nice == {"preprocess": min(19, base + stage_nice), "forward": base}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base, "the caller's thread is untouched"


@pytest.mark.parametrize("kind", ["not-a-video", "no-frames"])
def test_a_file_without_frames_is_retried_not_spun_on(tmp_path, kind):
    path = tmp_path / f"{kind}.avi"
    if kind == "not-a-video":
        path.write_bytes(b"RIFF\x00\x00\x00\x00AVI not really")
        expected = f"cannot open video source {path} (OpenCV could not read it)"
    else:
        write_video(path, 0)  # a valid AVI that OpenCV opens, holding no frame
        expected = f"video source {path} gave no frames"
    messages = Messages()
    settings = vp.CaptureSettings(
        str(path), mode="files", frame_dir=str(tmp_path / "f"), loop=True, retry_initial_s=0.05
    )
    pipeline = vp.VideoPipeline(settings, messages)
    worker = threading.Thread(target=pipeline.run, daemon=True)
    worker.start()
    time.sleep(0.5)
    pipeline.stop()
    worker.join(DEADLINE_S)
    errors = messages.errors()
    # 0.05 + 0.1 + 0.2 (less jitter) fit in 0.5 s: a handful of attempts, not thousands.
    assert 2 <= len(errors) <= 5, errors
    assert {e["error"] for e in errors} == {expected}
