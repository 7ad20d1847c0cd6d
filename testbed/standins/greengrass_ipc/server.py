"""Test equipment: a stand-in for the Greengrass V2 nucleus's IPC server, NOT a Greengrass implementation.

A Greengrass V2 component talks to its nucleus over a Unix domain socket with AWS's event stream RPC
protocol; ``awsiotsdk``'s ``GreengrassCoreIPCClientV2`` finds the socket in
``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` and authenticates with the token in ``SVCUID``.
AWS's nucleus cannot run here (no AWS account, no download), so this file speaks just enough of that
protocol for the real client to be tested:

- CONNECT: ``:version`` must be ``0.1.0`` and the payload's ``authToken`` must equal the token the stand-in
  was given; otherwise the CONNECT_ACK refuses the connection, as the nucleus does.
- ``aws.greengrass#PublishToIoTCore``: records topic, QoS and payload (what the nucleus would send to IoT Core)
  and answers ``PublishToIoTCoreResponse``.
- ``aws.greengrass#SubscribeToIoTCore``: answers ``SubscribeToIoTCoreResponse`` and keeps the stream open;
  messages the test injects on a matching topic arrive as ``IoTCoreMessage`` stream events.
- PING gets PING_RESPONSE.

Anything else is refused with a message naming what is not implemented (an ``aws.greengrass#ServiceError``
for another operation, ``aws.greengrass#InvalidArgumentsError`` for a request field it does not handle, a
PROTOCOL_ERROR for a message out of protocol) and listed under ``refused`` in its state, so a test can see it.
Given ``authorize`` and ``relay`` (the stand-in nucleus's deployment agent does,
``testbed/standins/greengrass_v2_nucleus/agent``), it serves several components: each CONNECTs with its own
SVCUID, an operation outside the component's ``accessControl`` is refused with ``UnauthorizedError``, and
publishes and subscriptions go to AWS IoT Core over the nucleus's MQTT connection (messages come back through
``inject``). Without them (the unit and integration tests of the detector's IPC calls) it records publishes
and delivers only what a test injects. Not modelled: retained messages, MQTT 5 properties.

The framing is AWS's event stream encoding: prelude (total length, headers length, CRC32 of those 8 bytes),
headers, payload, CRC32 of the whole message; integers big-endian. Standard library only, Python 3.8+, so the
same file runs on the controller and with a simulated device's system ``python3``.

    python3 server.py serve --socket /tmp/ipc.socket --auth-token TOKEN --control /tmp/ipc.control [--record F]
    python3 server.py inject --control /tmp/ipc.control --topic blog/infer/input --payload '{"image_path": "x"}'
    python3 server.py state --control /tmp/ipc.control
    python3 server.py wait-subscribed --control /tmp/ipc.control --topic blog/infer/input --timeout 60
    python3 server.py wait-published --control /tmp/ipc.control --count 1 --timeout 60
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from typing import Any, Callable, Dict, List, Optional, Tuple

LOG = logging.getLogger("greengrass_ipc_standin")

PROTOCOL_VERSION = "0.1.0"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the event stream encoding's limit

# Header value types of the event stream encoding.
BOOL_TRUE, BOOL_FALSE, BYTE, INT16, INT32, INT64, BYTE_BUF, STRING, TIMESTAMP, UUID = range(10)
_FIXED_SIZES = {BYTE: 1, INT16: 2, INT32: 4, INT64: 8, TIMESTAMP: 8, UUID: 16}
_FIXED_FORMATS = {BYTE: ">b", INT16: ">h", INT32: ">i", INT64: ">q", TIMESTAMP: ">q"}

# Event stream RPC message types and flags (awscrt.eventstream.rpc.MessageType / MessageFlag).
APPLICATION_MESSAGE, APPLICATION_ERROR, PING, PING_RESPONSE, CONNECT, CONNECT_ACK = range(6)
PROTOCOL_ERROR, INTERNAL_ERROR = 6, 7
CONNECTION_ACCEPTED, TERMINATE_STREAM = 0x1, 0x2

SERVICE = "aws.greengrass#"
PUBLISH_OPERATION = SERVICE + "PublishToIoTCore"
SUBSCRIBE_OPERATION = SERVICE + "SubscribeToIoTCore"
QOS_VALUES = ("0", "1")  # awsiot.greengrasscoreipc.model.QOS: AT_MOST_ONCE, AT_LEAST_ONCE
# Request fields the stand-in handles; any other field set by the client is refused, not ignored.
PUBLISH_FIELDS = {"topicName", "qos", "payload"}
SUBSCRIBE_FIELDS = {"topicName", "qos"}

Header = Tuple[str, int, Any]


class ProtocolViolation(Exception):
    """The peer broke the event stream (RPC) protocol; the connection is closed after a PROTOCOL_ERROR."""


# --- Event stream encoding -------------------------------------------------------------------------------


def encode_header(name: str, value_type: int, value: Any) -> bytes:
    raw_name = name.encode("utf-8")
    if not 0 < len(raw_name) < 256:
        raise ValueError(f"header name {name!r} must be 1-255 bytes")
    encoded = struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">B", value_type)
    if value_type in (BOOL_TRUE, BOOL_FALSE):
        return encoded
    if value_type in _FIXED_FORMATS:
        return encoded + struct.pack(_FIXED_FORMATS[value_type], value)
    if value_type == UUID:
        return encoded + bytes(value)
    raw = value.encode("utf-8") if value_type == STRING else bytes(value)
    return encoded + struct.pack(">H", len(raw)) + raw


def decode_headers(data: bytes) -> Dict[str, Any]:
    headers = {}  # type: Dict[str, Any]
    offset = 0
    while offset < len(data):
        name_length = data[offset]
        name = data[offset + 1 : offset + 1 + name_length].decode("utf-8")
        offset += 1 + name_length
        if offset >= len(data):
            raise ProtocolViolation(f"header {name!r} has no value type")
        value_type = data[offset]
        offset += 1
        if value_type in (BOOL_TRUE, BOOL_FALSE):
            value = value_type == BOOL_TRUE  # type: Any
        elif value_type in _FIXED_SIZES:
            size = _FIXED_SIZES[value_type]
            chunk = data[offset : offset + size]
            value = chunk if value_type == UUID else struct.unpack(_FIXED_FORMATS[value_type], chunk)[0]
            offset += size
        elif value_type in (BYTE_BUF, STRING):
            (length,) = struct.unpack(">H", data[offset : offset + 2])
            chunk = data[offset + 2 : offset + 2 + length]
            value = chunk.decode("utf-8") if value_type == STRING else bytes(chunk)
            offset += 2 + length
        else:
            raise ProtocolViolation(f"header {name!r} has unknown value type {value_type}")
        if offset > len(data):
            raise ProtocolViolation(f"header {name!r} runs past the headers section")
        headers[name] = value
    return headers


def encode_message(headers: List[Header], payload: bytes = b"") -> bytes:
    raw_headers = b"".join(encode_header(*header) for header in headers)
    prelude = struct.pack(">II", 12 + len(raw_headers) + len(payload) + 4, len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _receive_exactly(connection: socket.socket, size: int) -> Optional[bytes]:
    chunks = []
    while size:
        chunk = connection.recv(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_message(connection: socket.socket) -> Optional[Tuple[Dict[str, Any], bytes]]:
    """One message's headers and payload, None at end of stream; CRCs and lengths are checked."""
    prelude = _receive_exactly(connection, 12)
    if prelude is None:
        return None
    total_length, headers_length, prelude_crc = struct.unpack(">III", prelude)
    if zlib.crc32(prelude[:8]) != prelude_crc:
        raise ProtocolViolation("prelude CRC32 does not match")
    if not 16 <= total_length <= MAX_MESSAGE_BYTES or headers_length > total_length - 16:
        raise ProtocolViolation(f"message length {total_length} / headers length {headers_length} out of range")
    rest = _receive_exactly(connection, total_length - 12)
    if rest is None:
        raise ProtocolViolation("connection closed in the middle of a message")
    (message_crc,) = struct.unpack(">I", rest[-4:])
    if zlib.crc32(prelude + rest[:-4]) != message_crc:
        raise ProtocolViolation("message CRC32 does not match")
    return decode_headers(rest[:headers_length]), rest[headers_length:-4]


# --- MQTT topics ---------------------------------------------------------------------------------------


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 topic filter matching (``+`` one level, ``#`` the rest)."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels) or (level != "+" and level != topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)


def _valid_filter(topic_filter: str) -> bool:
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


# --- The server ----------------------------------------------------------------------------------------


class _RequestRefused(Exception):
    """A request the stand-in answers with an APPLICATION_ERROR (``error_shape``) and records as refused."""

    def __init__(self, error_shape: str, message: str) -> None:
        super().__init__(message)
        self.error_shape = error_shape


class _ClientConnection:
    def __init__(self, server: GreengrassIpcStandIn, connection: socket.socket, number: int) -> None:
        self.server = server
        self.connection = connection
        self.number = number
        self.send_lock = threading.Lock()
        self.connected = False
        self.last_stream_id = 0
        self.open_streams = set()  # type: set
        self.token = None  # type: Optional[str]

    def send(self, message_type: int, stream_id: int, flags: int = 0, headers=(), payload: bytes = b"") -> None:
        rpc_headers = [(":message-type", INT32, message_type), (":message-flags", INT32, flags)]
        rpc_headers.append((":stream-id", INT32, stream_id))
        with self.send_lock:
            self.connection.sendall(encode_message(rpc_headers + list(headers), payload))

    def send_shape(self, stream_id: int, model: str, body: dict, message_type=APPLICATION_MESSAGE, flags=0) -> None:
        headers = [(":content-type", STRING, "application/json"), ("service-model-type", STRING, model)]
        self.send(message_type, stream_id, flags, headers, json.dumps(body).encode("utf-8"))

    def serve(self) -> None:
        try:
            while True:
                message = read_message(self.connection)
                if message is None:
                    return
                if not self.handle(*message):
                    return
        except ProtocolViolation as error:
            self.server.refuse(f"connection {self.number}: protocol error: {error}")
            self._protocol_error(str(error))
        except OSError as error:
            LOG.info("connection %d: %s", self.number, error)
        finally:
            self.server.forget(self)
            self.connection.close()

    def _protocol_error(self, reason: str) -> None:
        try:
            body = json.dumps({"message": reason}).encode("utf-8")
            self.send(PROTOCOL_ERROR, 0, 0, [(":content-type", STRING, "application/json")], body)
        except OSError:
            pass

    def handle(self, headers: Dict[str, Any], payload: bytes) -> bool:
        for name in (":message-type", ":message-flags", ":stream-id"):
            if not isinstance(headers.get(name), int):
                raise ProtocolViolation(f"message without the int32 header {name}")
        message_type, flags, stream_id = headers[":message-type"], headers[":message-flags"], headers[":stream-id"]
        if not self.connected:
            if message_type != CONNECT:
                raise ProtocolViolation(f"message type {message_type} before CONNECT")
            return self.connect(headers, payload)
        if message_type == PING:
            self.send(PING_RESPONSE, 0, 0, payload=payload)
            return True
        if message_type == CONNECT:
            raise ProtocolViolation("a second CONNECT on an established connection")
        if message_type != APPLICATION_MESSAGE:
            raise ProtocolViolation(f"message type {message_type} is not handled by this stand-in")
        if stream_id in self.open_streams:
            if flags & TERMINATE_STREAM:
                self.open_streams.discard(stream_id)
                self.server.unsubscribe(self, stream_id)
                return True
            raise ProtocolViolation(f"stream {stream_id}: client stream events are not implemented by this stand-in")
        if stream_id <= self.last_stream_id:
            if flags & TERMINATE_STREAM:
                return True  # the client closing a stream the stand-in already ended
            raise ProtocolViolation(f"stream id {stream_id} is not above the last one ({self.last_stream_id})")
        self.last_stream_id = stream_id
        self.start_operation(stream_id, headers, payload)
        return True

    def connect(self, headers: Dict[str, Any], payload: bytes) -> bool:
        version = headers.get(":version")
        if version != PROTOCOL_VERSION:
            raise ProtocolViolation(f"CONNECT :version {version!r}, this stand-in speaks {PROTOCOL_VERSION}")
        try:
            token = json.loads(payload.decode("utf-8")).get("authToken")
        except (ValueError, AttributeError):
            token = None
        if not self.server.accepts(token):
            # The token is a secret of the component: say that it did not match, never what it was.
            self.server.refuse(f"connection {self.number}: CONNECT refused: authToken does not match SVCUID")
            self.send(CONNECT_ACK, 0, 0)
            # The client closes on a refusing CONNECT_ACK (AccessDeniedError); closing first would make that a
            # bare "socket closed" on its side.
            self._wait_for_client_close(5.0)
            return False
        self.connected = True
        self.token = token
        LOG.info("connection %d: CONNECT accepted", self.number)
        self.server.note("CONNECT")
        self.send(CONNECT_ACK, 0, CONNECTION_ACCEPTED)
        return True

    def _wait_for_client_close(self, timeout: float) -> None:
        self.connection.settimeout(timeout)
        try:
            while self.connection.recv(4096):
                pass
        except OSError:
            pass

    def start_operation(self, stream_id: int, headers: Dict[str, Any], payload: bytes) -> None:
        operation = headers.get("operation")
        try:
            if headers.get(":content-type") != "application/json":
                raise _RequestRefused(
                    SERVICE + "InvalidArgumentsError",
                    f"{operation}: :content-type {headers.get(':content-type')!r}, expected application/json",
                )
            if operation == PUBLISH_OPERATION:
                request = self._request(operation, headers, payload, PUBLISH_FIELDS)
                self.server.check_allowed(self.token, operation, request["topicName"])
                self.server.relay_to_core("publish", request["topicName"], request["qos"], request["payload"])
                self.server.record_publish(request)
                self.send_shape(stream_id, SERVICE + "PublishToIoTCoreResponse", {}, flags=TERMINATE_STREAM)
            elif operation == SUBSCRIBE_OPERATION:
                request = self._request(operation, headers, payload, SUBSCRIBE_FIELDS)
                if not _valid_filter(request["topicName"]):
                    raise _RequestRefused(
                        SERVICE + "InvalidArgumentsError", f"{operation}: invalid topic filter {request['topicName']!r}"
                    )
                self.server.check_allowed(self.token, operation, request["topicName"])
                self.server.relay_to_core("subscribe", request["topicName"], request["qos"])
                self.open_streams.add(stream_id)
                # The response goes out before the subscription is visible, so no event can overtake it.
                self.send_shape(stream_id, SERVICE + "SubscribeToIoTCoreResponse", {})
                self.server.subscribe(self, stream_id, request["topicName"], request["qos"])
            else:
                raise _RequestRefused(
                    SERVICE + "ServiceError",
                    f"operation {operation!r} is not implemented by the Greengrass IPC stand-in "
                    f"(it implements {PUBLISH_OPERATION} and {SUBSCRIBE_OPERATION})",
                )
        except _RequestRefused as refusal:
            self.server.refuse(f"connection {self.number}: {refusal}")
            self.send_shape(
                stream_id, refusal.error_shape, {"message": str(refusal)}, APPLICATION_ERROR, TERMINATE_STREAM
            )

    @staticmethod
    def _request(operation: str, headers: Dict[str, Any], payload: bytes, fields: set) -> dict:
        expected_model = operation + "Request"
        if headers.get("service-model-type") != expected_model:
            raise _RequestRefused(
                SERVICE + "InvalidArgumentsError",
                f"{operation}: service-model-type {headers.get('service-model-type')!r}, expected {expected_model}",
            )
        try:
            request = json.loads(payload.decode("utf-8"))
        except ValueError as error:
            raise _RequestRefused(
                SERVICE + "InvalidArgumentsError", f"{operation}: payload is not JSON: {error}"
            ) from None
        if not isinstance(request, dict):
            raise _RequestRefused(SERVICE + "InvalidArgumentsError", f"{operation}: payload is not a JSON object")
        unhandled = sorted(set(request) - fields)
        if unhandled:
            raise _RequestRefused(
                SERVICE + "InvalidArgumentsError",
                f"{operation}: field(s) {', '.join(unhandled)} not implemented by the Greengrass IPC stand-in "
                f"(it handles {', '.join(sorted(fields))})",
            )
        topic = request.get("topicName")
        if not isinstance(topic, str) or not topic:
            raise _RequestRefused(SERVICE + "InvalidArgumentsError", f"{operation}: topicName is required")
        if request.get("qos") not in QOS_VALUES:
            raise _RequestRefused(
                SERVICE + "InvalidArgumentsError",
                f"{operation}: qos {request.get('qos')!r}, expected one of {', '.join(QOS_VALUES)}",
            )
        if operation == PUBLISH_OPERATION:
            if "+" in topic or "#" in topic:
                raise _RequestRefused(
                    SERVICE + "InvalidArgumentsError", f"{operation}: topicName {topic!r} has a wildcard"
                )
            try:
                request["payload"] = base64.b64decode(request.get("payload", ""), validate=True)
            except (ValueError, TypeError) as error:
                raise _RequestRefused(
                    SERVICE + "InvalidArgumentsError", f"{operation}: payload is not base64: {error}"
                ) from None
        return request


class GreengrassIpcStandIn:
    """The stand-in server; ``start()`` it, then read ``published`` / ``refused`` and ``inject()`` messages."""

    def __init__(
        self,
        socket_path: str,
        auth_token: str,
        record_path: Optional[str] = None,
        authorize: Optional[Callable[[str, str, str], Tuple[Optional[str], Optional[str]]]] = None,
        relay: Optional[Callable[..., bool]] = None,
    ) -> None:
        """``authorize(token, operation, topic)`` -> (component or None, refusal or None) makes it a nucleus's
        IPC server for several components (each connects with its own SVCUID; an operation its accessControl
        does not allow is refused with UnauthorizedError); ``relay(kind, topic, qos[, payload])`` sends a
        publish or subscription to IoT Core over the nucleus's connection (False: not delivered)."""
        if not auth_token:
            raise ValueError("auth_token must not be empty: the client authenticates with SVCUID")
        self.socket_path = socket_path
        self.auth_token = auth_token
        self.authorize = authorize
        self.relay = relay
        self.record_path = record_path
        self.published = []  # type: List[dict]
        self.refused = []  # type: List[str]
        # What was served, in order ("CONNECT", "<operation> <topic>"): what a test asserts did or did not happen.
        self.history = []  # type: List[str]
        self._subscriptions = []  # type: List[Tuple[_ClientConnection, int, str, str]]
        self._connections = []  # type: List[_ClientConnection]
        self._changed = threading.Condition()
        self._listener = None  # type: Optional[socket.socket]
        self._connection_count = 0

    # --- lifecycle
    def start(self) -> GreengrassIpcStandIn:
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, name="ipc-accept", daemon=True).start()
        LOG.info("listening on %s", self.socket_path)
        return self

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._changed:
            connections = list(self._connections)
        for client in connections:
            try:
                client.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    def __enter__(self) -> GreengrassIpcStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with self._changed:
                self._connection_count += 1
                client = _ClientConnection(self, connection, self._connection_count)
                self._connections.append(client)
            threading.Thread(target=client.serve, name=f"ipc-{client.number}", daemon=True).start()

    # --- a nucleus's checks (only with authorize / relay)
    def accepts(self, token: Optional[str]) -> bool:
        if self.authorize is not None and token:
            return self.authorize(token, "", "")[0] is not None
        return token == self.auth_token

    def check_allowed(self, token: Optional[str], operation: str, topic: str) -> None:
        if self.authorize is None:
            return
        component, refusal = self.authorize(token or "", operation, topic)
        if refusal:
            # interprocess-communication.md: an operation no authorization policy allows gets UnauthorizedError.
            raise _RequestRefused(SERVICE + "UnauthorizedError", f"{operation} on {topic}: {refusal}")
        self.note(f"authorized {component} {operation} {topic}")

    def relay_to_core(self, kind: str, topic: str, qos: str, payload: bytes = b"") -> None:
        if self.relay is None:
            return
        if not self.relay(kind, topic, qos, payload):
            raise _RequestRefused(SERVICE + "ServiceError", f"{kind} {topic}: not accepted by AWS IoT Core")

    # --- what the connections report
    def record_publish(self, request: dict) -> None:
        record = {"topic": request["topicName"], "qos": request["qos"], "payload": request["payload"]}
        LOG.info("PublishToIoTCore %s (%d bytes)", record["topic"], len(record["payload"]))
        with self._changed:
            self.published.append(record)
            self.history.append("PublishToIoTCore " + record["topic"])
            if self.record_path:
                with open(self.record_path, "a", encoding="utf-8") as stream:
                    stream.write(json.dumps(_jsonable(record)) + "\n")
            self._changed.notify_all()

    def refuse(self, reason: str) -> None:
        LOG.warning("refused: %s", reason)
        with self._changed:
            self.refused.append(reason)
            self._changed.notify_all()

    def note(self, event: str) -> None:
        with self._changed:
            self.history.append(event)
            self._changed.notify_all()

    def subscribe(self, client: _ClientConnection, stream_id: int, topic_filter: str, qos: str) -> None:
        LOG.info("SubscribeToIoTCore %s (connection %d, stream %d)", topic_filter, client.number, stream_id)
        with self._changed:
            self._subscriptions.append((client, stream_id, topic_filter, qos))
            self.history.append("SubscribeToIoTCore " + topic_filter)
            self._changed.notify_all()

    def unsubscribe(self, client: _ClientConnection, stream_id: int) -> None:
        with self._changed:
            self._subscriptions = [s for s in self._subscriptions if (s[0], s[1]) != (client, stream_id)]
            self._changed.notify_all()

    def forget(self, client: _ClientConnection) -> None:
        with self._changed:
            self._subscriptions = [s for s in self._subscriptions if s[0] is not client]
            if client in self._connections:
                self._connections.remove(client)
            self._changed.notify_all()

    # --- what a test does
    @property
    def subscriptions(self) -> List[str]:
        with self._changed:
            return [topic_filter for _, _, topic_filter, _ in self._subscriptions]

    def inject(self, topic: str, payload: bytes) -> int:
        """Deliver an MQTT message from "IoT Core" to every matching subscription; returns how many got it."""
        with self._changed:
            targets = [(c, s) for c, s, f, _ in self._subscriptions if topic_matches(f, topic)]
        body = {"message": {"topicName": topic, "payload": base64.b64encode(payload).decode("ascii")}}
        delivered = 0
        for client, stream_id in targets:
            try:
                client.send_shape(stream_id, SERVICE + "IoTCoreMessage", body)
                delivered += 1
            except OSError as error:
                LOG.warning("delivery to connection %d failed: %s", client.number, error)
        LOG.info("injected %s into %d subscription(s)", topic, delivered)
        return delivered

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def wait_subscribed(self, topic: str, timeout: float) -> bool:
        return self.wait_for(lambda: any(topic_matches(s[2], topic) for s in self._subscriptions), timeout)

    def wait_published(self, count: int, timeout: float) -> bool:
        return self.wait_for(lambda: len(self.published) >= count, timeout)

    def state(self) -> dict:
        with self._changed:
            return {
                "published": [_jsonable(record) for record in self.published],
                "subscriptions": [topic_filter for _, _, topic_filter, _ in self._subscriptions],
                "refused": list(self.refused),
                "history": list(self.history),
            }


def _jsonable(record: dict) -> dict:
    payload = record["payload"]
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"topic": record["topic"], "qos": record["qos"], "payload": text, "payload_b64": _b64(payload)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- Control socket: how a test on another process (or over SSH) drives a running stand-in ------------------


def serve_control(server: GreengrassIpcStandIn, control_path: str) -> socket.socket:
    if os.path.exists(control_path):
        os.unlink(control_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(control_path)
    os.chmod(control_path, 0o600)
    listener.listen(4)

    def answer(request: dict) -> dict:
        command = request.get("command")
        if command == "state":
            return server.state()
        if command == "inject":
            payload = base64.b64decode(request["payload_b64"])
            return {"delivered": server.inject(request["topic"], payload)}
        if command == "wait-subscribed":
            return {"ok": server.wait_subscribed(request["topic"], float(request["timeout"]))}
        if command == "wait-published":
            return {"ok": server.wait_published(int(request["count"]), float(request["timeout"]))}
        return {"error": f"unknown control command {command!r}"}

    def loop() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                with connection.makefile("rwb") as stream:
                    try:
                        response = answer(json.loads(stream.readline().decode("utf-8")))
                    except (ValueError, KeyError, TypeError) as error:
                        response = {"error": f"bad control request: {error}"}
                    stream.write(json.dumps(response).encode("utf-8") + b"\n")

    threading.Thread(target=loop, name="ipc-control", daemon=True).start()
    return listener


def control_request(control_path: str, request: dict, timeout: float = 120) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout + 10)
        connection.connect(control_path)
        with connection.makefile("rwb") as stream:
            stream.write(json.dumps(request).encode("utf-8") + b"\n")
            stream.flush()
            return json.loads(stream.readline().decode("utf-8"))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the stand-in until SIGTERM/SIGINT")
    serve.add_argument("--socket", required=True, help="the IPC socket (the component's AWS_GG_NUCLEUS_... path)")
    serve.add_argument("--auth-token", required=True, help="the token the component gets as SVCUID")
    serve.add_argument("--control", required=True, help="a Unix socket for the test's inject/state commands")
    serve.add_argument("--record", help="also append each PublishToIoTCore to this JSON-lines file")
    inject = commands.add_parser("inject", help="deliver a message to matching subscriptions")
    inject.add_argument("--control", required=True)
    inject.add_argument("--topic", required=True)
    inject.add_argument("--payload", required=True, help="the message payload (text)")
    for name in ("state", "wait-subscribed", "wait-published"):
        command = commands.add_parser(name)
        command.add_argument("--control", required=True)
        if name == "wait-subscribed":
            command.add_argument("--topic", required=True)
        if name == "wait-published":
            command.add_argument("--count", type=int, default=1)
        if name != "state":
            command.add_argument("--timeout", type=float, default=60)
    options = parser.parse_args(argv)

    if options.command == "serve":
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
        server = GreengrassIpcStandIn(options.socket, options.auth_token, options.record).start()
        control = serve_control(server, options.control)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        signal.signal(signal.SIGINT, lambda *_: stopped.set())
        print(f"ready {options.socket}", flush=True)
        stopped.wait()
        control.close()
        server.stop()
        if os.path.exists(options.control):
            os.unlink(options.control)
        return 0

    request = {"command": options.command}  # type: Dict[str, Any]
    if options.command == "inject":
        request.update(topic=options.topic, payload_b64=_b64(options.payload.encode("utf-8")))
    elif options.command == "wait-subscribed":
        request.update(topic=options.topic, timeout=options.timeout)
    elif options.command == "wait-published":
        request.update(count=options.count, timeout=options.timeout)
    response = control_request(options.control, request, getattr(options, "timeout", 10))
    print(json.dumps(response, indent=2))
    if "error" in response or response.get("ok") is False or response.get("delivered") == 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
