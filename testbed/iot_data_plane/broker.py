"""An AWS IoT Core style MQTT broker for the test bed: amqtt with AWS IoT's authentication and policy rules.

Test equipment, started inside the local AWS endpoint's process (``moto_server_with_fixes.py``) so that
it reads the same IoT registry the control plane writes (``registry.py``): certificates, their status,
thing attachments and policies are checked live on every operation, as AWS does. The MQTT protocol is amqtt's (a
maintained Python broker); this module only adds AWS's rules, each from the AWS IoT Core developer guide
page named beside it (source: ``awsdocs/aws-iot-docs``, ``doc_source/<page>.md``).

Emulated:
- TLS only, with a client certificate (x509-client-certs.md). The server name (SNI) must be sent and must
  be an ``iot:Data-ATS`` endpoint host; the region is taken from it (mqtt.md: "Connection attempts that
  don't include the SNI are refused"; transport-security.md).
- The client certificate must be registered in the endpoint's IoT registry, in the region of the host
  name, and ACTIVE; its ID is the SHA-256 of its DER encoding (x509-client-certs.md,
  activate-or-deactivate-device-cert.md). Otherwise the connection is refused (CONNACK "not authorized",
  then the connection is closed).
- ``iot:Connect`` on ``client/<clientId>`` is evaluated at CONNECT (connect-policy.md); refused ->
  CONNACK "not authorized" and close. A refused CONNECT never disturbs the session of a client already
  connected with that client ID. An allowed CONNECT with a client ID in use disconnects the older client
  (mqtt.md, "AWS IoT differences from MQTT version 3.1.1": "the new client connection is accepted and the
  previously connected client is disconnected").
- ``iot:Publish`` on ``topic/<topic>`` (plus ``iot:RetainPublish`` for a retained message) for every
  PUBLISH; a refused publish disconnects the client (life-cycle-events.md, disconnectReason AUTH_ERROR:
  "The client failed to authenticate or authorization failed").
- ``iot:Subscribe`` on ``topicfilter/<filter>`` per filter; a refused filter gets the SUBACK failure
  return code 0x80 (MQTT 3.1.1 section 3.9.3).
- ``iot:Receive`` on ``topic/<topic>`` per delivered message (iot-action-resources.md); a message the
  subscriber may not receive is not delivered to it.
- Reserved topics: clients may publish and subscribe under ``$aws/`` (reserved-topics.md), under the
  same policy checks; any other topic starting with ``$`` is refused like an unauthorized publish.
- Policies: the union of every policy attached to the certificate, evaluated by
  ``testbed/iot_data_plane/policy.py`` (whose docstring lists its rules). A policy the evaluator
  refuses (malformed, or using what it does not emulate) denies the operation and is logged, never
  allows.

NOT emulated: MQTT 5 (amqtt speaks 3.1.1 only; a Greengrass nucleus speaks 3.1.1 unless its
``mqtt.version`` is ``mqtt5``); MQTT over WebSocket and SigV4/Cognito/custom-authorizer authentication;
ALPN and port 443; QoS 2 (AWS sends no PUBACK/SUBACK for it; amqtt serves it); retained-message rules
(AWS delivers retained messages only to a subscription whose filter equals the topic; amqtt sends them
to wildcard subscriptions too, and without the Receive check); persistent-session expiry; message size,
rate and connection limits; lifecycle events (``$aws/events/...``); a certificate deactivated or a
policy detached while connected does not drop the connection (each later operation is refused); the
IoT rules engine and Device Shadow service behind their ``$aws/`` topics (publishes there are
routed like any other topic, except the Greengrass health topic below).

Services behind reserved topics (``on_publish``; each may answer the requesting client directly or publish
to subscribers): ``$aws/things/<thing>/greengrassv2/health/json`` registers or updates the thing's Greengrass
V2 core device (``greengrassv2_emulation.on_health_message``); ``$aws/things/<thing>/jobs/...`` is the IoT
Jobs service that carries Greengrass V2 deployments (``jobs.py``).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import format_client_message

from testbed.iot_data_plane import pki
from testbed.iot_data_plane.registry import LOG, IotRegistry

_ATS_HOST = re.compile(r"^[a-z0-9]+-ats\.iot\.([a-z0-9-]+)\.amazonaws\.com$")


class IotProtocolHandler(BrokerProtocolHandler):
    """amqtt's per-connection handler, with the publish check made before the message is acknowledged:
    AWS answers an unauthorized PUBLISH by closing the connection, never with a PUBACK."""

    authorize_publish = None  # set by the broker: (session, topic, retain) -> bool

    async def handle_publish(self, publish_packet) -> None:
        topic = publish_packet.topic_name or ""
        if self.authorize_publish is not None and not self.authorize_publish(
            self.session, topic, bool(publish_packet.retain_flag)
        ):
            client_id = self.session.client_id if self.session else None
            LOG.info("%s: PUBLISH to %r not authorized, disconnecting (AUTH_ERROR)", client_id, topic)
            try:
                await self.writer.close()
            except OSError:
                pass
            return
        await super().handle_publish(publish_packet)


class IotCoreBroker(Broker):
    """amqtt's broker with AWS IoT Core's authentication and authorization (see the module docstring)."""

    def __init__(self, config: dict, registry: IotRegistry, on_publish=(), **kwargs: Any):
        super().__init__(config, **kwargs)
        self.registry = registry
        # Services behind reserved topics (region, topic, payload) -> None, e.g. Greengrass's health telemetry.
        self.on_publish = list(on_publish)

    # -- TLS: client certificate required, SNI of the ATS endpoint required --------------------------

    def _create_ssl_context(self, listener) -> ssl.SSLContext:
        return self.registry.server_context(_ATS_HOST)

    # -- CONNECT: authenticate and authorize before any session state changes -----------------------

    async def _initialize_client_session(self, reader, writer, remote_address, remote_port):
        try:
            handler, incoming = await IotProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
        except (AMQTTError, NoDataError) as exc:
            raise AMQTTError(exc) from exc
        except MQTTError:
            await writer.close()
            raise

        principal = self.registry.authenticate(writer.get_ssl_info())
        client_id = incoming.client_id or None
        allowed = principal is not None and client_id is not None
        if allowed:
            allowed = self.registry.authorize(principal, client_id, "iot:Connect", "client/" + client_id).allowed
        if not allowed:
            handler.attach(incoming, reader, writer)
            try:
                await handler.mqtt_connack_authorize(False)
                await writer.close()
            except OSError:
                pass  # the client may already be gone
            raise MQTTError("CONNECT of %s refused" % format_client_message(session=incoming))

        session = incoming
        if incoming.clean_session:
            await self._delete_session(client_id)
            session.parent = 0
        elif client_id in self._sessions:
            existing, _ = self._sessions[client_id]
            for name in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive", "username", "password"):
                setattr(existing, name, getattr(incoming, name))
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        # The authenticated identity is the new connection's, also when a persistent session is resumed.
        session.ssl_object = incoming.ssl_object
        session.iot_principal = principal
        handler.authorize_publish = self._publish_allowed
        return handler, session

    async def _authenticate(self, session: Session, listener) -> bool:
        return getattr(session, "iot_principal", None) is not None

    # -- PUBLISH / SUBSCRIBE / RECEIVE --------------------------------------------------------------

    def _allowed(self, session: Session, action: str, resource: str) -> bool:
        principal = getattr(session, "iot_principal", None)
        if principal is None:
            return False
        return self.registry.authorize(principal, session.client_id, action, resource).allowed

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        if topic.startswith("$") and not topic.startswith("$aws/"):
            return False
        if action == Action.SUBSCRIBE:
            return self._allowed(session, "iot:Subscribe", "topicfilter/" + topic)
        if action == Action.RECEIVE:
            return self._allowed(session, "iot:Receive", "topic/" + topic)
        return self._publish_allowed(session, topic, retain=False)

    def _publish_allowed(self, session: Session, topic: str, retain: bool) -> bool:
        if not topic or "#" in topic or "+" in topic:
            return False  # [MQTT-3.3.2-2]: a topic name has no wildcards
        if topic.startswith("$") and not topic.startswith("$aws/"):
            return False
        if not self._allowed(session, "iot:Publish", "topic/" + topic):
            return False
        return not retain or self._allowed(session, "iot:RetainPublish", "topic/" + topic)

    async def _handle_message_delivery(self, client_session, handler, wait_deliver) -> bool:
        """Route a publish the handler already authorized (amqtt's own version refuses every "$" topic)."""
        message = wait_deliver.result()
        if message is None or not message.topic:
            return True
        await self._broadcast_message(client_session, message.topic, message.data)
        if message.publish_packet and message.publish_packet.retain_flag:
            await self.retain_message(client_session, message.topic, message.data, message.qos)
        region = client_session.iot_principal.region
        for service in self.on_publish:
            try:
                outgoing = service(region, message.topic, bytes(message.data)) or []
            except Exception:  # noqa: BLE001 - a service's fault must not drop the publisher
                LOG.exception("service behind %s failed", message.topic)
                continue
            for answer in outgoing:
                data = json.dumps(answer.payload).encode()
                if not answer.to_publisher:
                    await self._broadcast_message(None, answer.topic, data)
                elif client_session.transitions.is_connected():
                    # A service's answer to a request goes to the requester only, subscribed or not.
                    await handler.mqtt_publish(answer.topic, data, 0, False)
        return True

    def publish_threadsafe(self, topic: str, payload: dict) -> None:
        """A message from a service (not from a client), from any thread: to subscribers, Receive checked."""
        data = json.dumps(payload).encode()
        asyncio.run_coroutine_threadsafe(self._broadcast_message(None, topic, data), self._loop)


class MqttDataPlane:
    """The broker on its own asyncio loop in a thread of the endpoint process."""

    def __init__(self, host: str, port: int, registry: IotRegistry, on_publish=()):
        self.host, self.port = host, port
        self.on_publish = on_publish
        self.registry = registry
        self.broker: IotCoreBroker | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, timeout: float = 15.0) -> MqttDataPlane:
        threading.Thread(target=self._run, name="iot-mqtt-broker", daemon=True).start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the test bed's MQTT broker did not start within %.0fs" % timeout)
        if self._error:
            raise RuntimeError("the test bed's MQTT broker failed to start: %s" % self._error) from self._error
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def serve():
            config = {
                "listeners": {"default": {"type": "tcp", "bind": "%s:%d" % (self.host, self.port), "ssl": True}},
                "plugins": {},
                "sys_interval": 0,
            }
            broker = IotCoreBroker(config, self.registry, on_publish=self.on_publish, loop=self._loop)
            await broker.start()
            self.broker = broker
            return broker

        try:
            self._loop.run_until_complete(serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def info(self) -> dict:
        return {"mqtt": {"host": self.host, "port": self.port}, "root_ca_pem": pki.ca_certificate_pem()}
