"""AWS IoT Greengrass V1 Lambda entry point of the frame-capture function (real-time video detection).

Run it as a long-lived (pinned) Lambda: on a core the module starts the video
pipeline (``video_pipeline.VideoPipeline``) in a background thread when it is loaded,
and the pipeline runs for the life of the container. Its settings are environment
variables (``video_pipeline`` lists the ``CAPTURE_*`` ones, ``object_detector`` the
detector's). With ``CAPTURE_MODE=inprocess`` (default) the same process hosts the
detector, so frames reach the forward pass without being copied or written to disk;
that function needs the model resource (and the NVIDIA devices on GPU hosts) besides
the camera. With ``CAPTURE_MODE=files`` it only captures, writes frames to files and
publishes their paths to the detector function's input topic.

Bad settings are published as ``{"error": ...}`` on ``OUTPUT_TOPIC`` and the function
stays up (fix the group and redeploy). The handler answers any event with the
pipeline's counters (frames captured, processed, dropped, failed).

Off a core nothing starts by itself: call ``set_publisher(publish)`` and ``start()``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Dict, Mapping, Optional

from object_detector import DEFAULT_OUTPUT_TOPIC, CorePublisher, DetectorConfig, ObjectDetector, Publisher
from video_pipeline import CaptureSettings, SettingsError, VideoPipeline

LOG = logging.getLogger(__name__)

_publish = CorePublisher()
_pipeline = None  # type: Optional[VideoPipeline]
_thread = None  # type: Optional[threading.Thread]


def set_publisher(publish: Optional[Publisher]) -> None:
    """Send messages through ``publish(topic, payload_bytes)``; None goes back to greengrasssdk."""
    _publish.set(publish)


def start(environ: Optional[Mapping[str, str]] = None) -> Optional[VideoPipeline]:
    """Start the pipeline in a background thread (once); None, with the error published, on bad settings."""
    global _pipeline, _thread
    if _pipeline is not None:
        return _pipeline
    source = os.environ if environ is None else environ
    try:
        settings = CaptureSettings.from_environ(source)
    except SettingsError as exc:
        LOG.error("frame capture not started: %s", exc)
        topic = source.get("OUTPUT_TOPIC") or DEFAULT_OUTPUT_TOPIC
        try:
            _publish(topic, json.dumps({"error": str(exc), "timestamp": time.time()}).encode("utf-8"))
        except Exception:  # noqa: BLE001 - nothing else to report it with
            LOG.exception("publishing the settings error failed")
        return None
    _pipeline = VideoPipeline(
        settings, _publish, detector_factory=lambda: ObjectDetector(DetectorConfig.from_environ(source))
    )
    _thread = threading.Thread(target=_run, args=(_pipeline,), name="frame-capture", daemon=True)
    _thread.start()
    return _pipeline


def _run(pipeline: VideoPipeline) -> None:
    try:
        stats = pipeline.run()
        LOG.info("frame capture finished: %s", json.dumps(stats))
    except Exception:  # noqa: BLE001 - logged for the core's function log; the handler still answers
        LOG.exception("frame capture stopped")


def stop(timeout: float = 10.0) -> None:
    """Stop the pipeline and wait for its thread (tests, shutdown)."""
    global _pipeline, _thread
    if _pipeline is not None:
        _pipeline.stop()
    if _thread is not None:
        _thread.join(timeout)
    _pipeline = None
    _thread = None


def function_handler(event: Any, context: Any) -> Dict[str, Any]:
    """The pipeline's counters; the pinned function does its work in its own thread, not per event."""
    if _pipeline is None:
        return {"running": False}
    stats = dict(_pipeline.stats())
    stats["running"] = _thread is not None and _thread.is_alive()
    return stats


lambda_handler = function_handler


def _start_on_core() -> None:
    if os.environ.get("AWS_IOT_THING_NAME") or os.environ.get("CAPTURE_AUTOSTART") == "1":
        start()


_start_on_core()
