"""The capture function's Greengrass V1 entry point off-core: real pipeline, real model, real video file.

The transport is the one stand-in (``set_publisher``), as for the detector's handler: greengrasssdk's
iot-data client only works inside a running Greengrass V1 core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import greengrass_frame_capture as capture
import pytest

from tests.video.conftest import LABELS, LAMBDA_DIR, expected_cells
from tests.video.test_video_pipeline import Messages, cells_of


@pytest.fixture
def published():
    messages = Messages()
    capture.set_publisher(messages)
    yield messages
    capture.stop()
    capture.set_publisher(None)


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_start_runs_the_pipeline_and_the_handler_reports_its_counters(published, small_model, video_40):
    environ = {
        "CAPTURE_SOURCE": str(video_40),
        "CAPTURE_RATE": "20",
        "MODEL_PATH": str(small_model),
        "CLASS_LABELS": ",".join(LABELS),
        "OUTPUT_TOPIC": "itest/detections",
    }
    pipeline = capture.start(environ)
    assert pipeline is not None and capture.start(environ) is pipeline, "started once"
    assert wait_for(lambda: not capture.function_handler({}, None)["running"]), "the file ends, the pipeline too"
    stats = capture.function_handler({}, None)
    assert stats["frames_captured"] == 40
    assert stats["frames_captured"] == stats["frames_processed"] + stats["frames_dropped"] + stats["frames_failed"]
    results = published.results("itest/detections")
    assert len(results) == stats["frames_processed"] > 0
    for payload in results:
        assert cells_of(payload) == expected_cells(payload["frame_index"])


def test_bad_settings_are_published_and_nothing_starts(published):
    assert capture.start({"CAPTURE_SOURCE": "", "OUTPUT_TOPIC": "itest/detections"}) is None
    errors = published.errors()
    assert len(errors) == 1 and errors[0]["error"].startswith("CAPTURE_SOURCE must be /dev/videoN")
    assert capture.function_handler({}, None) == {"running": False}


def test_on_a_core_it_starts_by_itself_and_keeps_retrying_what_is_missing(tmp_path):
    """Loaded as a core loads it (AWS_IOT_THING_NAME set): no event needed; a missing model is retried."""
    probe = (
        "import time, greengrass_frame_capture as c, sys\n"
        "assert 'greengrasssdk' not in sys.modules\n"
        "deadline = time.monotonic() + 60\n"
        "while c.function_handler({}, None)['errors_published'] < 3 and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "s = c.function_handler({}, None)\n"
        "print(__import__('json').dumps(s))\n"
    )
    env = dict(
        os.environ,
        AWS_IOT_THING_NAME="itest-core",
        CAPTURE_SOURCE="/dev/video99",
        CAPTURE_RETRY_INITIAL_S="0.05",
        CAPTURE_RETRY_MAX_S="0.2",
        MODEL_PATH=str(tmp_path / "no-model" / "deploy_model_algo_1"),
        PYTHONPATH=str(LAMBDA_DIR),
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    # Off-core the greengrasssdk publish fails (logged); the model is missing: reported and retried, still running.
    assert stats["running"] is True and stats["errors_published"] >= 3, stats
    assert "detector not ready: model file not found" in proc.stderr


def test_importing_off_a_core_starts_nothing():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, greengrass_frame_capture as c; assert c._pipeline is None; "
            "assert 'greengrasssdk' not in sys.modules; print(c.function_handler({}, None))",
        ],
        env={k: v for k, v in os.environ.items() if k not in ("AWS_IOT_THING_NAME", "CAPTURE_AUTOSTART")}
        | {"PYTHONPATH": str(LAMBDA_DIR)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "{'running': False}"
