"""Fixtures for the video pipeline: the real small SSD and real video files written with OpenCV."""

from __future__ import annotations

import sys
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
