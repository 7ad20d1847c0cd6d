"""The Greengrass IPC stand-in's own protocol handling: its framing, and what it refuses.

Its frames are decoded by botocore's event stream decoder (an implementation of the same encoding that this
file's code shares nothing with). Raw clients then break the protocol on purpose; the stand-in must answer with
a PROTOCOL_ERROR or a CONNECT_ACK refusal, and record why, instead of accepting it. The exchange with AWS's real
client is in tests/integration/test_greengrass_v2_detector_ipc.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.eventstream import EventStreamBuffer

from testbed.standins.greengrass_ipc import server as ipc

SVCUID = "unit-token"
STANDIN = Path(ipc.__file__)


def rpc_headers(message_type: int, stream_id: int = 0, flags: int = 0) -> list:
    return [(":message-type", ipc.INT32, message_type), (":message-flags", ipc.INT32, flags)] + [
        (":stream-id", ipc.INT32, stream_id)
    ]


def connect_message(svcuid: str = SVCUID, version: str = ipc.PROTOCOL_VERSION) -> bytes:
    headers = rpc_headers(ipc.CONNECT) + [(":version", ipc.STRING, version)]
    return ipc.encode_message(headers, json.dumps({"authToken": svcuid}).encode())


def test_frames_decode_with_botocore_and_back():
    headers = rpc_headers(ipc.APPLICATION_MESSAGE, 3, ipc.TERMINATE_STREAM)
    headers += [("service-model-type", ipc.STRING, "aws.greengrass#X"), ("flag", ipc.BOOL_TRUE, True)]
    frame = ipc.encode_message(headers, b'{"a": 1}')
    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    [decoded] = list(buffer)
    assert decoded.payload == b'{"a": 1}'
    assert decoded.headers == {
        ":message-type": 0,
        ":message-flags": 2,
        ":stream-id": 3,
        "service-model-type": "aws.greengrass#X",
        "flag": True,
    }

    left, right = socket.socketpair()
    with left, right:
        left.sendall(frame)
        assert ipc.read_message(right) == (decoded.headers, b'{"a": 1}')


def test_topic_filters():
    assert ipc.topic_matches("a/+/c", "a/b/c") and ipc.topic_matches("a/#", "a/b/c") and ipc.topic_matches("#", "x")
    assert not ipc.topic_matches("a/+", "a/b/c") and not ipc.topic_matches("a/b", "a/b/c")


@pytest.fixture
def stand_in(tmp_path):
    with ipc.GreengrassIpcStandIn(str(tmp_path / "ipc.socket"), SVCUID) as server:
        yield server


def exchange(server: ipc.GreengrassIpcStandIn, *frames: bytes) -> list[tuple[dict, bytes]]:
    """Send the frames, then read what comes back until the stand-in closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(server.socket_path)
        for frame in frames:
            client.sendall(frame)
        client.shutdown(socket.SHUT_WR)
        replies = []
        while (message := ipc.read_message(client)) is not None:
            replies.append(message)
        return replies


def test_application_message_before_connect_is_a_protocol_error(stand_in):
    publish = ipc.encode_message(rpc_headers(ipc.APPLICATION_MESSAGE, 1), b"{}")
    [(headers, payload)] = exchange(stand_in, publish)
    assert headers[":message-type"] == ipc.PROTOCOL_ERROR
    assert json.loads(payload) == {"message": "message type 0 before CONNECT"}
    assert stand_in.refused == ["connection 1: protocol error: message type 0 before CONNECT"]
    assert stand_in.history == []


def test_corrupt_frame_is_refused(stand_in):
    frame = bytearray(connect_message())
    frame[-1] ^= 0xFF
    [(headers, _)] = exchange(stand_in, bytes(frame))
    assert headers[":message-type"] == ipc.PROTOCOL_ERROR
    assert stand_in.refused == ["connection 1: protocol error: message CRC32 does not match"]


def test_unknown_protocol_version_is_refused(stand_in):
    [(headers, payload)] = exchange(stand_in, connect_message(version="9.9.9"))
    assert headers[":message-type"] == ipc.PROTOCOL_ERROR
    assert "CONNECT :version '9.9.9', this stand-in speaks 0.1.0" in json.loads(payload)["message"]


def test_connect_ack_accepts_the_token_and_refuses_another(stand_in):
    [(accepted, _)] = exchange(stand_in, connect_message())
    assert (accepted[":message-type"], accepted[":message-flags"]) == (ipc.CONNECT_ACK, ipc.CONNECTION_ACCEPTED)
    [(refused, _)] = exchange(stand_in, connect_message(svcuid="wrong"))
    assert (refused[":message-type"], refused[":message-flags"]) == (ipc.CONNECT_ACK, 0)
    assert stand_in.history == ["CONNECT"]
    assert stand_in.refused == ["connection 2: CONNECT refused: authToken does not match SVCUID"]


def test_request_fields_it_does_not_handle_are_refused(stand_in):
    headers = rpc_headers(ipc.APPLICATION_MESSAGE, 1) + [
        ("operation", ipc.STRING, ipc.PUBLISH_OPERATION),
        (":content-type", ipc.STRING, "application/json"),
        ("service-model-type", ipc.STRING, ipc.PUBLISH_OPERATION + "Request"),
    ]
    body = {"topicName": "t", "qos": "1", "payload": "", "retain": True}
    replies = exchange(stand_in, connect_message(), ipc.encode_message(headers, json.dumps(body).encode()))
    (error_headers, error_payload) = replies[1]
    assert error_headers[":message-type"] == ipc.APPLICATION_ERROR
    assert error_headers[":message-flags"] == ipc.TERMINATE_STREAM
    assert error_headers["service-model-type"] == "aws.greengrass#InvalidArgumentsError"
    assert "field(s) retain not implemented by the Greengrass IPC stand-in" in json.loads(error_payload)["message"]
    assert stand_in.published == []


def test_command_line_serves_and_is_driven_through_its_control_socket(tmp_path):
    socket_path, control = tmp_path / "ipc.socket", tmp_path / "control"
    argv = [sys.executable, str(STANDIN), "serve", "--socket", str(socket_path), "--auth-token", SVCUID]
    process = subprocess.Popen([*argv, "--control", str(control)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("ready ")
        deadline = time.monotonic() + 10
        while not control.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cli = [sys.executable, str(STANDIN)]
        nobody = subprocess.run([*cli, "inject", "--control", str(control), "--topic", "a", "--payload", "x"])
        assert nobody.returncode == 1  # delivered to no subscription
        state = subprocess.run([*cli, "state", "--control", str(control)], capture_output=True, text=True)
        assert json.loads(state.stdout) == {"published": [], "subscriptions": [], "refused": [], "history": []}
        waited = subprocess.run(
            [*cli, "wait-published", "--control", str(control), "--timeout", "0.2"], capture_output=True, text=True
        )
        assert (waited.returncode, json.loads(waited.stdout)) == (1, {"ok": False})
    finally:
        process.terminate()
        assert process.wait(10) == 0
    assert not socket_path.exists() and not control.exists()
