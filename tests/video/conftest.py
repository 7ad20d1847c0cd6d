"""Fixtures for the video pipeline: the real small SSD, real video files written with OpenCV, a real RTSP server."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import cv2
import pytest

from tests.inference import small_ssd

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "files" / "inference_lambda"
# The Lambda zip has its modules at its root and imports them flat; so do the tests.
if str(LAMBDA_DIR) not in sys.path:
    sys.path.insert(0, str(LAMBDA_DIR))

BLUE = (0, 0, 255)
YELLOW = (255, 255, 0)
FRAME_SIZE = (320, 240)
LABELS = list(small_ssd.CLASS_LABELS)


def boxes_in_frame(index: int) -> dict[tuple[int, int], tuple[int, int, int]]:
    """Grid cells of frame ``index``: a blue box moving right along row 1, a yellow one along row 3."""
    return {(1, index % small_ssd.GRID): BLUE, (3, (index + 2) % small_ssd.GRID): YELLOW}


def expected_cells(index: int) -> dict[tuple[int, int], str]:
    return {cell: ("blue_box" if rgb == BLUE else "yellow_box") for cell, rgb in boxes_in_frame(index).items()}


def write_video(path: Path, frames: int, size: tuple[int, int] = FRAME_SIZE, fps: float = 20.0) -> Path:
    """An MJPG .avi (which opencv-python-headless writes without extra codecs) of the moving boxes."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    try:
        for index in range(frames):
            writer.write(small_ssd.synthetic_image(size[0], size[1], boxes_in_frame(index)))
    finally:
        writer.release()
    return path


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> Path:
    return small_ssd.export_small_ssd(tmp_path_factory.mktemp("small-ssd"))


@pytest.fixture(scope="session")
def video_40(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "moving-boxes.avi", 40)


# ---- a real RTSP server (tests/video/rtsp_server.py, GStreamer, run with the system Python) -------------

RTSP_SERVER_SCRIPT = Path(__file__).resolve().with_name("rtsp_server.py")
# The virtualenv has no GStreamer bindings (gi); Debian's python3-gi belongs to the system Python.
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_START_TIMEOUT_S = 30


class RtspServer:
    """``rtsp_server.py`` as a subprocess: ``start()`` waits (bounded) for READY, ``stop()`` always ends it."""

    def __init__(self, video: Path, path: str = "/cam", loop: bool = True) -> None:
        self.video = video
        self.path = path
        self.loop = loop
        self.port = 0  # the first start picks a free port; later starts reuse it, so the URL stays the same
        self.url = ""
        self.process: subprocess.Popen | None = None
        self._stderr = None

    def start(self) -> str:
        assert self.process is None, "already running"
        command = [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--video", str(self.video), "--path", self.path]
        command += ["--port", str(self.port)] + (["--loop"] if self.loop else [])
        # stderr to a file, not a pipe: a chatty GStreamer must never block on a full pipe.
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.process.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=RTSP_START_TIMEOUT_S)
        except queue.Empty:
            line = ""
        if not line.startswith("READY rtsp://"):
            self._stderr.seek(0)
            stderr = self._stderr.read().decode(errors="replace")
            self.stop()
            pytest.fail(f"RTSP server did not start within {RTSP_START_TIMEOUT_S} s: {line!r} {stderr}")
        self.url = line.split()[1]
        self.port = int(self.url.split(":")[2].split("/")[0])
        return self.url

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen (SIGSTOPped) server could not act on SIGTERM
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        process.stdout.close()
        self._stderr.close()


def rtsp_server_missing_packages() -> list[str]:
    if not Path(SYSTEM_PYTHON).exists():
        return [f"python3 ({SYSTEM_PYTHON} not found)"]
    check = subprocess.run(
        [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    missing = [line.split(": ", 1)[1] for line in check.stdout.splitlines() if line.startswith("missing")]
    if check.returncode != 0 and not missing:
        missing = [f"(rtsp_server.py --check failed: {check.stdout}{check.stderr})"]
    return missing


@pytest.fixture(scope="session")
def rtsp_server_available() -> None:
    """Skips (fails under CI, where scripts/setup.sh has installed them) when GStreamer's RTSP server is missing."""
    missing = rtsp_server_missing_packages()
    if missing:
        reason = "GStreamer RTSP server unavailable, missing Debian packages (scripts/setup.sh installs them): "
        reason += "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def rtsp_server(rtsp_server_available):
    """Factory: ``rtsp_server(video, path="/cam", loop=True)`` -> a started RtspServer, stopped after the test."""
    servers = []

    def start(video: Path, path: str = "/cam", loop: bool = True) -> RtspServer:
        server = RtspServer(video, path, loop)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
