"""A real MQTT client (paho-mqtt, MQTT 3.1.1 over TLS) for the test bed's AWS IoT Core broker.

Test equipment for the tests and benchmarks: it connects the way an AWS IoT device does - mutual TLS
with its certificate and key, the bed's root CA, and the server name (SNI) of the account's
``iot:Data-ATS`` endpoint - while the TCP connection goes to the bed's loopback port. Each call waits
for the broker's answer and reports it as data (CONNACK code, SUBACK codes, PUBACK or disconnect), so
tests assert on what the broker did, not on timing.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class Outcome:
    """What the broker answered: accepted, or why not."""

    ok: bool
    detail: str
    codes: list[int] = field(default_factory=list)


class DataPlaneClient:
    def __init__(
        self,
        data_plane: dict,
        server_name: str,
        client_id: str,
        certificate: str,
        private_key: str,
        root_ca: str,
        timeout: float = 10.0,
    ):
        self.server_name = server_name
        self.timeout = timeout
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connack = threading.Event()
        self._connack_code: int | None = None
        self._disconnected = threading.Event()
        self._acks: dict[int, threading.Event] = {}
        self._suback_codes: dict[int, list[int]] = {}
        address = (data_plane["mqtt"]["host"], data_plane["mqtt"]["port"])

        class _Client(mqtt.Client):
            # TCP to the bed's loopback port; TLS (SNI and host name check) for the AWS endpoint's name.
            def _create_socket_connection(self):  # noqa: N802 - paho's name
                return socket.create_connection(address, timeout=timeout)

        self.mqtt = _Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=root_ca)
        context.load_cert_chain(certificate, private_key)
        self.mqtt.tls_set_context(context)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.on_publish = self._on_publish
        self.mqtt.on_message = lambda client, userdata, msg: self.messages.put((msg.topic, msg.payload))

    # -- callbacks ------------------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._connack_code = reason_code.value
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._disconnected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._suback_codes[mid] = [code.value for code in reason_codes]
        self._acks.setdefault(mid, threading.Event()).set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._acks.setdefault(mid, threading.Event()).set()

    # -- operations -----------------------------------------------------------------------------------

    def connect(self) -> Outcome:
        try:
            self.mqtt.connect(self.server_name, 8883, keepalive=30)
        except (ssl.SSLError, OSError) as exc:
            return Outcome(False, "TLS/connection error: %s" % exc)
        self.mqtt.loop_start()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._connack.wait(0.05):
                if self._connack_code == 0:
                    return Outcome(True, "CONNACK accepted")
                self.close()
                return Outcome(False, "CONNACK refused (code %s)" % self._connack_code, [self._connack_code])
            if self._disconnected.is_set():
                self.close()
                return Outcome(False, "closed before CONNACK")
        self.close()
        return Outcome(False, "no CONNACK within %.0fs" % self.timeout)

    def _wait_ack(self, mid: int) -> bool:
        event = self._acks.setdefault(mid, threading.Event())
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if event.wait(0.05):
                return True
            if self._disconnected.is_set():
                return False
        return False

    def subscribe(self, topic_filter: str, qos: int = 1) -> Outcome:
        result, mid = self.mqtt.subscribe(topic_filter, qos)
        if result != mqtt.MQTT_ERR_SUCCESS or not self._wait_ack(mid):
            return Outcome(False, "no SUBACK (disconnected: %s)" % self._disconnected.is_set())
        codes = self._suback_codes[mid]
        return Outcome(all(c < 0x80 for c in codes), "SUBACK %s" % codes, codes)

    def subscribe_all(self, topic_filters, qos: int = 1) -> Outcome:
        """Each filter in turn; the first refusal (naming its filter) ends it, else the last SUBACK."""
        outcome = Outcome(True, "nothing to subscribe to")
        for topic_filter in topic_filters:
            outcome = self.subscribe(topic_filter, qos)
            if not outcome.ok:
                return Outcome(False, "%s: %s" % (topic_filter, outcome.detail), outcome.codes)
        return outcome

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> Outcome:
        """QoS 1: accepted when PUBACKed; a broker that refuses the publish closes the connection instead."""
        info = self.mqtt.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return Outcome(False, "not sent (paho rc %s)" % info.rc)
        if self._wait_ack(info.mid):
            return Outcome(True, "PUBACK")
        return Outcome(False, "disconnected" if self._disconnected.is_set() else "no PUBACK")

    def receive(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        try:
            return self.messages.get(timeout=self.timeout if timeout is None else timeout)
        except queue.Empty:
            return None

    @property
    def disconnected(self) -> bool:
        return self._disconnected.is_set()

    def wait_disconnected(self, timeout: float | None = None) -> bool:
        return self._disconnected.wait(self.timeout if timeout is None else timeout)

    def close(self) -> None:
        try:
            self.mqtt.disconnect()
        finally:
            self.mqtt.loop_stop()


# --- what the stand-in cores on the devices share (this file ships beside them) ----------------------------------


def load_device_endpoints(path: str, ca_file: str) -> dict:
    """The bed's endpoint map on a device (``LocalAwsEndpoint.device_endpoints()``; OSError or ValueError when it is
    missing or malformed), with its root CA written to ``ca_file`` and named as ``endpoints["ca_file"]``."""
    import json
    import os

    with open(path, encoding="utf-8") as stream:
        endpoints = json.load(stream)
    os.makedirs(os.path.dirname(ca_file), exist_ok=True)
    with open(ca_file, "w", encoding="utf-8") as stream:
        stream.write(endpoints["root_ca_pem"])
    endpoints["ca_file"] = ca_file
    return endpoints


def https_request(
    endpoints: dict,
    server_name: str,
    certificate: str,
    private_key: str,
    method: str,
    path: str,
    body=None,
    headers=None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    """One request to an AWS host name over mutual TLS with the device's certificate, sent to the bed's HTTPS port."""
    import http.client

    context = ssl.create_default_context(cafile=endpoints["ca_file"])
    context.load_cert_chain(certificate, private_key)
    raw = socket.create_connection((endpoints["https"]["host"], endpoints["https"]["port"]), timeout=timeout)
    connection = http.client.HTTPSConnection(server_name, timeout=timeout)
    connection.sock = context.wrap_socket(raw, server_hostname=server_name)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}, Host=server_name))
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def kill_process_group(process, sig=None, wait: float = 5) -> None:
    """Signal a child's whole process group (it called setsid), then SIGKILL it if it is still there after ``wait``."""
    import os
    import signal
    import subprocess

    try:
        os.killpg(process.pid, signal.SIGKILL if sig is None else sig)
        process.wait(timeout=wait)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
