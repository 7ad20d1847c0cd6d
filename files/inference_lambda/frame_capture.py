"""Frames from a camera, a video file or an RTSP stream, with bounded hand-over and retry with back-off.

Pieces the video pipeline (``video_pipeline``) is built from; nothing here knows about
MXNet or Greengrass:

- ``open_source`` / ``FrameSource``: ``cv2.VideoCapture`` on ``/dev/videoN`` (V4L2),
  a file path or an ``rtsp://`` (also ``http(s)://``) URL. Live sources (camera, URL)
  are grabbed continuously and converted to BGR (``retrieve``) only at the requested
  rate, so the driver's buffer never serves stale frames (with FFmpeg, ``grab`` itself
  decodes: about 3.5 ms for a 1080p MJPG frame here, ``retrieve`` 0.7 ms); files are read at the requested rate
  as if a camera produced them.
- ``DropOldestQueue``: a queue of fixed size where a put into a full queue drops the
  *oldest* item and counts it, so a slow consumer always gets the newest frames and
  memory never grows.
- ``Backoff``: bounded exponential back-off with jitter for reopening a source that
  is missing or failed.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import deque
from typing import Any, Optional

import cv2
import numpy as np

LIVE_URL_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https)://", re.IGNORECASE)
VIDEO_DEVICE_RE = re.compile(r"^/dev/video[0-9]+$")


class SourceError(Exception):
    """The source cannot be opened or stopped giving frames."""


def describe_source(source: str) -> str:
    """``camera``, ``stream`` or ``file``; raises ValueError for what is none of them."""
    text = (source or "").strip()
    if not text:
        raise ValueError("CAPTURE_SOURCE must be /dev/videoN, a video file path or an rtsp:// URL, got ''")
    if VIDEO_DEVICE_RE.match(text):
        return "camera"
    if LIVE_URL_RE.match(text):
        return "stream"
    if "://" in text:
        raise ValueError("CAPTURE_SOURCE URL scheme not supported (rtsp, rtsps, rtmp, http, https): {}".format(text))
    return "file"


class Frame:
    """One captured frame and what the stages add to it on the way."""

    __slots__ = ("index", "image", "capture_time", "capture_clock", "batch", "preprocess_ms")

    def __init__(self, index: int, image: np.ndarray, capture_time: float, capture_clock: float) -> None:
        self.index = index
        self.image = image
        self.capture_time = capture_time  # wall clock (epoch seconds), for the message
        self.capture_clock = capture_clock  # time.monotonic(), for latency
        self.batch = None  # type: Optional[np.ndarray]
        self.preprocess_ms = 0.0


class DropOldestQueue:
    """Bounded FIFO; putting into a full queue drops the oldest item (counted, logged) instead of blocking."""

    def __init__(self, maxsize: int, name: str = "queue", drop_log_size: int = 10000) -> None:
        if maxsize < 1:
            raise ValueError("{} size must be at least 1, got {}".format(name, maxsize))
        self.maxsize = maxsize
        self.name = name
        self._items = deque()
        self._cond = threading.Condition()
        self.put_count = 0
        self.dropped = 0
        self.high_water = 0
        # (index of the dropped item, index of the item whose arrival dropped it), newest last.
        self.drop_log = deque(maxlen=drop_log_size)

    def put(self, item: Any) -> Optional[Any]:
        """Add ``item``; returns the item dropped to make room, if any."""
        dropped = None
        with self._cond:
            if len(self._items) >= self.maxsize:
                dropped = self._items.popleft()
                self.dropped += 1
                self.drop_log.append((getattr(dropped, "index", -1), getattr(item, "index", -1)))
            self._items.append(item)
            self.put_count += 1
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify()
        return dropped

    def get(self, timeout: Optional[float] = None) -> Optional[Any]:
        """The oldest item, or None after ``timeout`` seconds without one."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            return self._items.popleft()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Backoff:
    """Delays ``initial * 2**n`` capped at ``maximum``, each scaled by a random factor in [1 - jitter, 1].

    With ``jitter`` below 0.5 each delay before the cap is longer than the one before,
    whatever the random draws, while sources failing together still spread out.
    """

    def __init__(self, initial: float = 1.0, maximum: float = 30.0, jitter: float = 0.25, rng=None) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("back-off needs 0 < initial <= maximum, got {} and {}".format(initial, maximum))
        if not 0 <= jitter < 0.5:
            raise ValueError("back-off jitter must be in [0, 0.5), got {}".format(jitter))
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2.0 ** min(self.attempt, 62)))
        self.attempt += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempt = 0


STREAM_TIMEOUT_MS = 10000


def _open_stream(url: str) -> Any:
    """FFmpeg capture of a network stream with open and read time-outs, so a dead camera cannot hang us."""
    params = []
    for name in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC"):
        if hasattr(cv2, name):  # OpenCV 4.5.2 and later
            params += [getattr(cv2, name), STREAM_TIMEOUT_MS]
    if params:
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    return cv2.VideoCapture(url)


class FrameSource:
    """An opened ``cv2.VideoCapture`` that yields BGR frames at (at most) ``rate`` per second."""

    def __init__(self, source: str, rate: float = 0.0) -> None:
        self.source = source
        self.kind = describe_source(source)
        self.rate = float(rate)
        self._capture = None  # type: Any
        self._next_due = 0.0
        self.skipped = 0

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "stream")

    def open(self) -> None:
        if self.kind == "file" and not os.path.isfile(self.source):
            raise SourceError("video source not found: {}".format(self.source))
        if self.kind == "camera" and not os.path.exists(self.source):
            raise SourceError("camera device not found: {}".format(self.source))
        if self.kind == "camera":
            capture = cv2.VideoCapture(int(self.source[len("/dev/video") :]), cv2.CAP_V4L2)
        elif self.kind == "stream":
            capture = _open_stream(self.source)
        else:
            capture = cv2.VideoCapture(self.source)
        if not capture.isOpened():
            capture.release()
            raise SourceError("cannot open video source {} (OpenCV could not read it)".format(self.source))
        if self.live:
            # The fewest driver buffers the backend allows: a grab returns a current frame, not an old one.
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture
        self._next_due = time.monotonic()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def read(self, stop: threading.Event) -> Optional[np.ndarray]:
        """The next frame due by the rate, or None at the end of a file (or on stop).

        Live frames grabbed but not due are counted in ``skipped``. Raises SourceError when a live
        source stops giving frames.
        """
        capture = self._capture
        if capture is None:
            raise SourceError("video source {} is not open".format(self.source))
        if self.live:
            # Grab every frame the source produces (FFmpeg decodes it there); only the due ones are retrieved
            # (colour conversion and copy).
            while not stop.is_set():
                if not capture.grab():
                    raise SourceError("video source {} stopped giving frames".format(self.source))
                if self.rate <= 0 or time.monotonic() >= self._next_due:
                    break
                self.skipped += 1
        else:
            if self.rate > 0:
                delay = self._next_due - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return None
            if not capture.grab():
                return None  # end of the file
        ok, image = capture.retrieve()
        if not ok or image is None:
            if self.live:
                raise SourceError("video source {} gave an undecodable frame".format(self.source))
            return None
        if self.rate > 0:
            # Due times keep their grid, but a consumer that fell behind does not get a burst afterwards.
            self._next_due = max(self._next_due + 1.0 / self.rate, time.monotonic() - 1.0 / self.rate)
        return image
