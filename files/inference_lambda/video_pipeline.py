"""Real-time detection on a video source: capture, preprocess and forward pass overlap, late frames drop.

Why one process (``CAPTURE_MODE=inprocess``, the default)
    Greengrass V1 runs every Lambda in its own process (and container), so two
    Lambdas can only hand a frame over by serialising it: a 1080p BGR frame is
    6 MB, far beyond an MQTT message (128 KB), so a split capture function must
    write each frame to a file and publish its path. On one core the zero-copy
    path is therefore *one* pinned function (``greengrass_frame_capture``) that
    hosts capture and detector threads and passes numpy arrays by reference.

    ``CAPTURE_MODE=files`` is the fallback for a capture function split from the
    detector function: each frame is written as JPEG into ``CAPTURE_FRAME_DIR``
    (a ring of ``CAPTURE_FRAME_RING`` file names, so the disk never fills) and
    ``{"image_path", "frame_index", "capture_timestamp"}`` is published to the
    detector's input topic (``CAPTURE_FRAME_TOPIC``). It costs a JPEG encode and
    decode per frame and cannot drop stale frames on the detector's side.

The in-process pipeline (three threads, bounded queues)::

    capture (decode) --raw[1..2]--> preprocess (resize, RGB, NCHW) --ready[1..2]--> forward + publish

While the forward pass runs on frame N, frame N+1 is decoded and resized. A frame
arriving at a full queue drops the *oldest* one queued there, and every drop is
counted: ``frames_captured == frames_processed + frames_dropped + frames_failed``
once the pipeline has drained. Nothing is ever queued without bound.

On a CPU, MXNet's forward pass keeps every core busy, so decoding the next frame
competes with it. The capture and preprocess threads therefore run at a lower
priority (``CAPTURE_STAGE_NICE``, default +10, per thread on Linux): the scheduler
gives them the cores in the forward pass's own serial gaps and between passes, and
the forward pass is slowed as little as possible. When the detector is idle the
frame is decoded at once, so single-frame latency does not suffer.

Each processed frame publishes on ``OUTPUT_TOPIC`` the single-image payload
(``image_size``, ``score_threshold``, ``detection_count``, ``detections_above_threshold``,
``detections``) plus ``source``, ``frame_index``, ``capture_timestamp`` (epoch seconds when
the decoded frame was in memory), ``latency_ms`` (capture to the publish call),
``timing_ms`` and the running ``frames_dropped``.

A missing or failing source, or a model that is not there yet, publishes
``{"error", "source", "attempt", "retry_in_s"}`` and is retried with bounded,
jittered exponential back-off (``CAPTURE_RETRY_INITIAL_S`` doubling up to
``CAPTURE_RETRY_MAX_S``); capture resumes when the source appears.

Settings (environment variables, ``CaptureSettings.from_environ``; the detector's own are
in ``object_detector``):

``CAPTURE_SOURCE``           ``/dev/videoN``, a video file path or an ``rtsp://`` URL (required)
``CAPTURE_RATE``             frames per second taken from the source; 0 = as the source gives them
``CAPTURE_MODE``             ``inprocess`` (default) or ``files``
``CAPTURE_QUEUE_SIZE``       1 (default) or 2: frames each queue holds before dropping the oldest
``CAPTURE_LOOP``             ``1``: a video file starts over at its end (default: the pipeline ends)
``CAPTURE_MAX_FRAMES``       end after this many frames (smoke tests, benchmarks); default 0, no limit
``CAPTURE_RETRY_INITIAL_S``  first retry delay, default 1
``CAPTURE_RETRY_MAX_S``      longest retry delay, default 30
``CAPTURE_FRAME_DIR``        files mode: where frames are written, default ``/tmp/edgeml-frames``
``CAPTURE_FRAME_RING``       files mode: how many frame files are reused in turn, default 8
``CAPTURE_FRAME_TOPIC``      files mode: the detector's input topic, default ``blog/infer/input``
``CAPTURE_STAGE_NICE``       niceness added to the capture and preprocess threads (0..19), default 10
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Mapping, Optional

import cv2

from frame_capture import Backoff, DropOldestQueue, Frame, FrameSource, SourceError, describe_source
from object_detector import (
    DEFAULT_INPUT_TOPIC,
    DEFAULT_OUTPUT_TOPIC,
    DetectorConfig,
    ObjectDetector,
    Publisher,
    decode_detections,
)

LOG = logging.getLogger(__name__)

MODES = ("inprocess", "files")
# How often idle stages look at the stop and end flags.
POLL_S = 0.05
# Niceness added to the capture and preprocess threads: see the module docstring.
DEFAULT_STAGE_NICE = 10


def lower_thread_priority(nice: int) -> None:
    """Add ``nice`` to the calling thread's niceness (Linux: per thread); a no-op where that is unsupported."""
    if not nice or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        thread_id = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread_id, min(19, os.getpriority(os.PRIO_PROCESS, thread_id) + nice))
    except OSError as exc:
        LOG.warning("cannot lower the priority of thread %s: %s", threading.current_thread().name, exc)


class SettingsError(ValueError):
    """A capture setting is wrong; the message names it."""


class CaptureSettings:
    def __init__(
        self,
        source: str,
        rate: Any = 0.0,
        mode: str = "inprocess",
        queue_size: Any = 1,
        loop: bool = False,
        max_frames: Any = 0,
        retry_initial_s: Any = 1.0,
        retry_max_s: Any = 30.0,
        frame_dir: str = "/tmp/edgeml-frames",
        frame_ring: Any = 8,
        frame_topic: str = DEFAULT_INPUT_TOPIC,
        output_topic: str = DEFAULT_OUTPUT_TOPIC,
        stage_nice: Any = DEFAULT_STAGE_NICE,
    ) -> None:
        try:
            self.source_kind = describe_source(source)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        self.source = source.strip()
        self.rate = _number("CAPTURE_RATE", rate, minimum=0.0)
        if mode not in MODES:
            raise SettingsError("CAPTURE_MODE must be one of {}, got {!r}".format(", ".join(MODES), mode))
        self.mode = mode
        self.queue_size = int(_number("CAPTURE_QUEUE_SIZE", queue_size, minimum=1, maximum=2, integer=True))
        self.loop = bool(loop)
        self.max_frames = int(_number("CAPTURE_MAX_FRAMES", max_frames, minimum=0, integer=True))
        self.retry_initial_s = _number("CAPTURE_RETRY_INITIAL_S", retry_initial_s, minimum=0.001)
        self.retry_max_s = _number("CAPTURE_RETRY_MAX_S", retry_max_s, minimum=self.retry_initial_s)
        self.frame_dir = frame_dir
        self.frame_ring = int(_number("CAPTURE_FRAME_RING", frame_ring, minimum=2, integer=True))
        self.frame_topic = frame_topic or DEFAULT_INPUT_TOPIC
        self.output_topic = output_topic or DEFAULT_OUTPUT_TOPIC
        self.stage_nice = int(_number("CAPTURE_STAGE_NICE", stage_nice, minimum=0, maximum=19, integer=True))

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None) -> CaptureSettings:
        source = os.environ if environ is None else environ
        env = {key: value for key, value in source.items() if value != ""}
        loop = env.get("CAPTURE_LOOP", "0").strip().lower()
        if loop not in ("0", "1", "true", "false"):
            raise SettingsError("CAPTURE_LOOP must be 1 or 0, got {!r}".format(loop))
        return cls(
            source=env.get("CAPTURE_SOURCE", ""),
            rate=env.get("CAPTURE_RATE", 0.0),
            mode=env.get("CAPTURE_MODE", "inprocess").strip().lower(),
            queue_size=env.get("CAPTURE_QUEUE_SIZE", 1),
            loop=loop in ("1", "true"),
            max_frames=env.get("CAPTURE_MAX_FRAMES", 0),
            retry_initial_s=env.get("CAPTURE_RETRY_INITIAL_S", 1.0),
            retry_max_s=env.get("CAPTURE_RETRY_MAX_S", 30.0),
            frame_dir=env.get("CAPTURE_FRAME_DIR", "/tmp/edgeml-frames"),
            frame_ring=env.get("CAPTURE_FRAME_RING", 8),
            frame_topic=env.get("CAPTURE_FRAME_TOPIC", DEFAULT_INPUT_TOPIC),
            output_topic=env.get("OUTPUT_TOPIC", DEFAULT_OUTPUT_TOPIC),
            stage_nice=env.get("CAPTURE_STAGE_NICE", DEFAULT_STAGE_NICE),
        )


def _number(name: str, value: Any, minimum: float, maximum: Optional[float] = None, integer: bool = False) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SettingsError("{} must be a number, got {!r}".format(name, value)) from None
    if number != number or number < minimum or (maximum is not None and number > maximum):
        bounds = "{}..{}".format(minimum, maximum) if maximum is not None else "at least {}".format(minimum)
        raise SettingsError("{} must be {}, got {!r}".format(name, bounds, value))
    if integer and number != int(number):
        raise SettingsError("{} must be a whole number, got {!r}".format(name, value))
    return number


class VideoPipeline:
    """Runs one source through the detector until the source ends (a file without loop) or ``stop()``."""

    def __init__(
        self,
        settings: CaptureSettings,
        publish: Publisher,
        detector_factory: Optional[Callable[[], Any]] = None,
        backoff: Optional[Backoff] = None,
    ) -> None:
        self.settings = settings
        self.publish = publish
        self._detector_factory = detector_factory or (lambda: ObjectDetector(DetectorConfig.from_environ()))
        self.backoff = backoff or Backoff(settings.retry_initial_s, settings.retry_max_s)
        self.raw = DropOldestQueue(settings.queue_size, "raw")
        self.ready = DropOldestQueue(settings.queue_size, "ready")
        self.detector = None  # type: Any
        self._stop = threading.Event()
        self._captured_all = threading.Event()
        self._preprocessed_all = threading.Event()
        self._lock = threading.Lock()
        self.frames_captured = 0
        self.frames_processed = 0
        self.frames_failed = 0
        self.frames_skipped = 0  # live frames grabbed but not decoded, to keep to CAPTURE_RATE
        self.errors_published = 0
        self.retry_delays = []  # type: list
        self._next_index = 0

    # ---- control ------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return OrderedDict(
                [
                    ("source", self.settings.source),
                    ("mode", self.settings.mode),
                    ("frames_captured", self.frames_captured),
                    ("frames_processed", self.frames_processed),
                    ("frames_dropped", self.raw.dropped + self.ready.dropped),
                    ("frames_failed", self.frames_failed),
                    ("frames_skipped_for_rate", self.frames_skipped),
                    ("dropped_before_preprocess", self.raw.dropped),
                    ("dropped_before_forward", self.ready.dropped),
                    ("queue_high_water", OrderedDict([("raw", self.raw.high_water), ("ready", self.ready.high_water)])),
                    ("queue_size", self.settings.queue_size),
                    ("errors_published", self.errors_published),
                ]
            )

    def run(self) -> Dict[str, Any]:
        """Blocks until the source has ended and every captured frame is processed or dropped; returns stats."""
        workers = []  # type: list
        if self.settings.mode == "inprocess":
            if not self._load_detector():
                return self.stats()
            workers = [
                threading.Thread(target=self._preprocess_loop, name="preprocess", daemon=True),
                threading.Thread(target=self._forward_loop, name="forward", daemon=True),
            ]
            for worker in workers:
                worker.start()
        else:
            os.makedirs(self.settings.frame_dir, exist_ok=True)
        try:
            if self.settings.mode == "inprocess" and self.settings.stage_nice:
                # A thread of its own, so lowering its priority leaves the caller's alone.
                capture = threading.Thread(target=self._capture_loop_niced, name="capture", daemon=True)
                capture.start()
                capture.join()
            else:
                self._capture_loop()
        finally:
            self._captured_all.set()
            for worker in workers:
                worker.join()
        return self.stats()

    def _capture_loop_niced(self) -> None:
        lower_thread_priority(self.settings.stage_nice)
        self._capture_loop()

    # ---- capture (the calling thread, or its own lower-priority one) -------------------------------

    def _load_detector(self) -> bool:
        while not self._stop.is_set():
            try:
                self.detector = self._detector_factory()
                self.backoff.reset()
                return True
            except Exception as exc:  # noqa: BLE001 - e.g. the model resource not synced yet: retry
                self._report_and_wait("detector not ready: {}".format(exc))
        return False

    def _capture_loop(self) -> None:
        settings = self.settings
        while not self._stop.is_set():
            source = FrameSource(settings.source, settings.rate)
            try:
                source.open()
            except SourceError as exc:
                self._report_and_wait(str(exc))
                continue
            LOG.info("capturing from %s (%s) at %s fps", settings.source, source.kind, settings.rate or "source")
            first_index = self._next_index
            try:
                ended = self._read_frames(source)
            except SourceError as exc:
                source.close()
                if self._next_index > first_index:
                    self.backoff.reset()  # it worked for a while: start over with short waits
                self._report_and_wait(str(exc))
                continue
            source.close()
            if self._frame_limit_reached():
                return
            if ended and self._next_index == first_index:
                # Opens but gives nothing (still being written, or no video in it): retry, never spin.
                self._report_and_wait("video source {} gave no frames".format(settings.source))
                continue
            self.backoff.reset()
            if ended and not (settings.loop and source.kind == "file"):
                LOG.info("video source %s ended", settings.source)
                return

    def _frame_limit_reached(self) -> bool:
        return 0 < self.settings.max_frames <= self._next_index

    def _read_frames(self, source: FrameSource) -> bool:
        """Reads until the end of a file or the frame limit (True) or stop (False); SourceError when a live
        source fails."""
        while not self._stop.is_set():
            if self._frame_limit_reached():
                return True
            skipped_before = source.skipped
            try:
                image = source.read(self._stop)
            finally:
                with self._lock:
                    self.frames_skipped += source.skipped - skipped_before
            if image is None:
                return not self._stop.is_set()
            frame = Frame(self._next_index, image, time.time(), time.monotonic())
            self._next_index += 1
            with self._lock:
                self.frames_captured += 1
            if self.settings.mode == "inprocess":
                self.raw.put(frame)
            else:
                self._hand_off_as_file(frame)
        return False

    def _hand_off_as_file(self, frame: Frame) -> None:
        settings = self.settings
        path = os.path.join(settings.frame_dir, "frame-{:03d}.jpg".format(frame.index % settings.frame_ring))
        ok, encoded = cv2.imencode(".jpg", frame.image)
        if not ok:
            with self._lock:
                self.frames_failed += 1
            self._publish_error("cannot encode frame {} as JPEG".format(frame.index))
            return
        temporary = path + ".part"
        with open(temporary, "wb") as handle:
            handle.write(encoded.tobytes())
        os.replace(temporary, path)  # the detector never reads a half-written frame
        event = OrderedDict(
            [("image_path", path), ("frame_index", frame.index), ("capture_timestamp", frame.capture_time)]
        )
        self._send(settings.frame_topic, event)
        with self._lock:
            self.frames_processed += 1

    def _report_and_wait(self, message: str) -> None:
        delay = self.backoff.next_delay()
        with self._lock:
            self.retry_delays.append(delay)
        self._publish_error(message, attempt=self.backoff.attempt, retry_in_s=round(delay, 3))
        self._stop.wait(delay)

    # ---- preprocess and forward stages ---------------------------------------------------------------

    def _preprocess_loop(self) -> None:
        lower_thread_priority(self.settings.stage_nice)
        try:
            while True:
                frame = self.raw.get(POLL_S)
                if frame is None:
                    if self._captured_all.is_set() and len(self.raw) == 0:
                        return
                    continue
                started = time.perf_counter()
                try:
                    frame.batch = self.detector.preprocess(frame.image)
                except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the stream
                    self._frame_failed(frame, exc)
                    continue
                frame.preprocess_ms = (time.perf_counter() - started) * 1000.0
                self.ready.put(frame)
        finally:
            self._preprocessed_all.set()

    def _forward_loop(self) -> None:
        detector = self.detector
        config = detector.config
        while True:
            frame = self.ready.get(POLL_S)
            if frame is None:
                if self._preprocessed_all.is_set() and len(self.ready) == 0:
                    return
                continue
            try:
                started = time.perf_counter()
                rows = detector.forward(frame.batch)
                forwarded = time.perf_counter()
                height, width = frame.image.shape[:2]
                detections, total = decode_detections(
                    rows, width, height, config.score_threshold, config.label_for, config.max_detections
                )
                done = time.perf_counter()
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the stream
                self._frame_failed(frame, exc)
                continue
            with self._lock:
                self.frames_processed += 1
                dropped = self.raw.dropped + self.ready.dropped
            payload = OrderedDict(
                [
                    ("source", self.settings.source),
                    ("frame_index", frame.index),
                    ("capture_timestamp", frame.capture_time),
                    ("image_size", OrderedDict([("width", int(width)), ("height", int(height))])),
                    ("score_threshold", config.score_threshold),
                    ("detection_count", len(detections)),
                    ("detections_above_threshold", total),
                    ("detections", detections),
                    (
                        "timing_ms",
                        OrderedDict(
                            [
                                ("preprocess_ms", round(frame.preprocess_ms, 3)),
                                ("forward_ms", round((forwarded - started) * 1000.0, 3)),
                                ("postprocess_ms", round((done - forwarded) * 1000.0, 3)),
                            ]
                        ),
                    ),
                    ("frames_dropped", dropped),
                ]
            )
            # Frames are no longer referenced once published: memory stays flat however long the stream.
            frame.image = frame.batch = None
            payload["latency_ms"] = round((time.monotonic() - frame.capture_clock) * 1000.0, 3)
            payload["timestamp"] = time.time()
            self._send(self.settings.output_topic, payload)

    def _frame_failed(self, frame: Frame, exc: Exception) -> None:
        LOG.exception("frame %d failed", frame.index)
        with self._lock:
            self.frames_failed += 1
        self._publish_error("frame {} failed: {}: {}".format(frame.index, type(exc).__name__, exc))

    # ---- messages -----------------------------------------------------------------------------------

    def _publish_error(self, message: str, **details: Any) -> None:
        LOG.warning("%s", message)
        payload = OrderedDict([("error", message), ("source", self.settings.source)])
        payload.update(details)
        payload["timestamp"] = time.time()
        with self._lock:
            self.errors_published += 1
        self._send(self.settings.output_topic, payload)

    def _send(self, topic: str, payload: Mapping[str, Any]) -> None:
        try:
            self.publish(topic, json.dumps(payload).encode("utf-8"))
        except Exception:  # noqa: BLE001 - losing one message must not stop the stream
            LOG.exception("publishing to %s failed", topic)
