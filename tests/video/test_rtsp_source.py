"""The video pipeline against a real RTSP server: GStreamer's gst-rtsp-server serving the generated video.

The server (``rtsp_server.py``, started by the ``rtsp_server`` fixture with the system Python)
sends the MJPG video as JPEG over RTP, paced at its 20 fps, as an IP camera does; OpenCV's
FFmpeg backend reads it exactly as on a device. The detector is the real small SSD; the only
stand-in is the message transport (a list collector, as in test_video_pipeline.py).
"""

from __future__ import annotations

import signal
import threading

import frame_capture
import numpy as np
import pytest
import video_pipeline as vp

from tests.video.conftest import FRAME_SIZE, expected_cells
from tests.video.test_video_pipeline import DEADLINE_S, Messages, assert_accounting, cells_of, real_detector, wait_until

STREAM_FPS = 20  # video_40 is written at 20 fps


def start_pipeline(pipeline: vp.VideoPipeline) -> threading.Thread:
    worker = threading.Thread(target=pipeline.run, name="pipeline", daemon=True)
    worker.start()
    return worker


def stop_pipeline(pipeline: vp.VideoPipeline, worker: threading.Thread) -> None:
    pipeline.stop()
    worker.join(DEADLINE_S)
    assert not worker.is_alive(), f"the pipeline did not stop within {DEADLINE_S} s: {pipeline.stats()}"


def assert_frames_of_the_video(results: list[dict], url: str) -> None:
    """Each result shows some frame of the moving-boxes video: the blue box in row 1, the yellow one two
    columns on in row 3 (the stream's frame numbers are not the pipeline's, so the exact frame is unknown)."""
    frames_of_the_video = [expected_cells(index) for index in range(4)]  # the boxes' cycle is 4 frames
    for payload in results:
        assert cells_of(payload) in frames_of_the_video, payload
        assert payload["source"] == url
        assert payload["image_size"] == {"width": FRAME_SIZE[0], "height": FRAME_SIZE[1]}
        assert payload["detection_count"] == 2
        assert all(detection["score"] >= 0.5 for detection in payload["detections"])


def test_an_rtsp_stream_is_detected_end_to_end_and_sampled_at_the_rate(small_model, video_40, rtsp_server):
    url = rtsp_server(video_40, "/cam", loop=True).url
    messages = Messages()
    settings = vp.CaptureSettings(url, rate=5)  # a quarter of the stream's 20 fps
    pipeline = vp.VideoPipeline(settings, messages, detector_factory=lambda: real_detector(small_model))
    worker = start_pipeline(pipeline)
    try:
        assert wait_until(lambda: len(messages.results()) >= 10 or messages.errors()), pipeline.stats()
    finally:
        stop_pipeline(pipeline, worker)

    stats = pipeline.stats()
    assert messages.errors() == [] and stats["errors_published"] == 0
    assert_accounting(stats, 1)
    assert stats["frames_failed"] == 0
    results = messages.results()
    assert len(results) == stats["frames_processed"] >= 10
    assert_frames_of_the_video(results, url)
    indices = [payload["frame_index"] for payload in results]
    assert indices == sorted(set(indices))
    # Grabbed at the stream's rate, decoded at 5 fps: about three of every four frames are skipped undecoded.
    assert stats["frames_skipped_for_rate"] >= 2 * stats["frames_captured"] > 0, stats
    captured = [payload["capture_timestamp"] for payload in results]
    assert np.median(np.diff(captured)) == pytest.approx(1 / 5, rel=0.3), np.diff(captured)


def test_an_rtsp_server_that_goes_away_is_reported_retried_and_resumed_on_the_same_url(
    small_model, video_40, rtsp_server
):
    server = rtsp_server(video_40, "/cam", loop=True)
    url = server.url
    messages = Messages()
    settings = vp.CaptureSettings(url, rate=10, retry_initial_s=0.1, retry_max_s=0.4)
    pipeline = vp.VideoPipeline(settings, messages, detector_factory=lambda: real_detector(small_model))
    worker = start_pipeline(pipeline)
    try:
        assert wait_until(lambda: len(messages.results()) >= 3), pipeline.stats()
        server.stop()  # SIGTERM: the server process ends, the camera is gone
        assert wait_until(lambda: len(messages.errors()) >= 4), pipeline.stats()
        assert worker.is_alive(), "the pipeline keeps running while the server is down"
        results_while_down = len(messages.results())

        server.start()  # same port, same path: the camera is back
        assert server.url == url
        assert wait_until(lambda: len(messages.results()) >= results_while_down + 3), pipeline.stats()
        errors_before_stop = len(messages.errors())
    finally:
        stop_pipeline(pipeline, worker)

    errors = messages.errors()
    assert errors[0]["error"] == f"video source {url} stopped giving frames"
    cannot_open = f"cannot open video source {url} (OpenCV could not read it)"
    assert {error["error"] for error in errors[1:]} == {cannot_open}, errors
    assert all(error["source"] == url for error in errors)
    # It had worked, so back-off starts over: attempt 1, 2, 3, ... with growing delays up to the cap.
    assert [error["attempt"] for error in errors] == list(range(1, len(errors) + 1))
    delays = [error["retry_in_s"] for error in errors]
    assert delays[0] < delays[1] < delays[2] and max(delays) <= 0.4
    assert len(errors) == errors_before_stop, "no errors once the stream was back"
    stats = pipeline.stats()
    assert_accounting(stats, 1)
    assert stats["frames_failed"] == 0
    results = messages.results()
    assert len(results) == stats["frames_processed"] >= results_while_down + 3
    assert_frames_of_the_video(results, url)
    indices = [payload["frame_index"] for payload in results]
    assert indices == sorted(set(indices)), "frame numbers carry on across the reconnection"


def test_an_rtsp_path_the_server_does_not_serve_is_reported_naming_the_url(video_40, rtsp_server, tmp_path):
    server = rtsp_server(video_40, "/cam")
    url = server.url.replace("/cam", "/no-such-stream")
    messages = Messages()
    settings = vp.CaptureSettings(url, mode="files", frame_dir=str(tmp_path), retry_initial_s=0.05)
    pipeline = vp.VideoPipeline(settings, messages)
    worker = start_pipeline(pipeline)
    try:
        assert wait_until(lambda: len(messages.errors()) >= 2), pipeline.stats()
    finally:
        stop_pipeline(pipeline, worker)
    errors = messages.errors()
    assert {error["error"] for error in errors} == {f"cannot open video source {url} (OpenCV could not read it)"}
    assert pipeline.stats()["frames_captured"] == 0


def test_a_frozen_rtsp_server_times_out_instead_of_hanging_and_the_stream_resumes(
    video_40, rtsp_server, tmp_path, monkeypatch
):
    """SIGSTOP: the TCP connection stays open but nothing arrives (a hung camera). Without FFmpeg's read
    and open time-outs grab() and the reopen would block forever; here they give up after 1.5 s."""
    monkeypatch.setattr(frame_capture, "STREAM_TIMEOUT_MS", 1500)
    server = rtsp_server(video_40, "/cam", loop=True)
    url = server.url
    messages = Messages()
    settings = vp.CaptureSettings(
        url, rate=10, mode="files", frame_dir=str(tmp_path), frame_ring=4, retry_initial_s=0.1, retry_max_s=0.2
    )
    pipeline = vp.VideoPipeline(settings, messages)
    worker = start_pipeline(pipeline)
    try:
        assert wait_until(lambda: len(messages.results("blog/infer/input")) >= 3), pipeline.stats()
        server.signal(signal.SIGSTOP)
        assert wait_until(lambda: len(messages.errors()) >= 2), pipeline.stats()
        frames_while_frozen = len(messages.results("blog/infer/input"))
        server.signal(signal.SIGCONT)
        assert wait_until(lambda: len(messages.results("blog/infer/input")) >= frames_while_frozen + 3)
    finally:
        stop_pipeline(pipeline, worker)
    errors = [error["error"] for error in messages.errors()]
    assert errors[0] == f"video source {url} stopped giving frames"
    assert set(errors[1:]) == {f"cannot open video source {url} (OpenCV could not read it)"}, errors
