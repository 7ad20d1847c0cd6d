#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iot_mqtt_request
short_description: Publish a request on AWS IoT Core over MQTT and wait for the answer on another topic
version_added: 0.3.0
description:
  - Connects to the account's AWS IoT Core data endpoint over MQTT 3.1.1 with mutual TLS (a client certificate
    registered in AWS IoT and its private key), subscribes to I(answer_topic), publishes I(payload) on
    I(request_topic) with QoS 1, and returns the first message that arrives on I(answer_topic).
  - The request is sent again every I(resend_every) seconds until an answer comes or I(timeout) passes;
    a Greengrass deployment is SUCCEEDED once its components run, which can be before a component has subscribed,
    and AWS IoT Core drops a message nobody is subscribed to.
  - This is the check of the AWS blog this collection started from (a request on C(blog/infer/input), the
    detections on C(blog/infer/output)), used by C(playbooks/smoke_test.yml) through Greengrass.
  - Changes nothing in AWS; in check mode nothing is published.
requirements:
  - paho-mqtt >= 2.0 on the host that runs the module (usually the controller)
author:
  - edgeml.greengrass maintainers (@edgeml)
options:
  endpoint:
    description:
      - The account's C(iot:Data-ATS) endpoint host name (C(aws iot describe-endpoint --endpoint-type iot:Data-ATS)).
        It is the TLS server name, checked against the server's certificate.
    type: str
    required: true
  port:
    description:
      - MQTT over TLS port (AWS IoT Core takes 8883, and 443 with ALPN, which this module does not send).
    type: int
    default: 8883
  address:
    description:
      - Connect to this address instead of resolving I(endpoint) (a private endpoint, a tunnel, a test bed); the
        TLS server name stays I(endpoint).
    type: str
  root_ca:
    description:
      - PEM file of the CA the endpoint's certificate chains to (Amazon Root CA 1 for C(iot:Data-ATS)).
    type: path
    required: true
  certificate:
    description:
      - PEM file of the client certificate, registered and ACTIVE in AWS IoT, with a policy allowing
        C(iot:Connect) as I(client_id), C(iot:Publish) on I(request_topic), C(iot:Subscribe) and C(iot:Receive) on
        I(answer_topic).
    type: path
    required: true
  private_key:
    description:
      - PEM file of the certificate's private key.
    type: path
    required: true
  client_id:
    description:
      - MQTT client ID (AWS IoT closes another connection using the same ID).
    type: str
    required: true
  request_topic:
    description:
      - Topic to publish the request on; a literal topic (no C(+) or C(#)), not a C($aws/) reserved topic.
    type: str
    required: true
  answer_topic:
    description:
      - Topic the answer arrives on; a literal topic, different from I(request_topic).
    type: str
    required: true
  payload:
    description:
      - The request, a dict (sent as JSON) or a string. At most 128 KiB (AWS IoT Core's message size limit).
    type: raw
    required: true
  timeout:
    description:
      - Seconds to wait for an answer in all.
    type: int
    default: 120
  resend_every:
    description:
      - Seconds to wait for an answer before sending the request again.
    type: int
    default: 10
  expect_answers_from:
    description:
      - When several devices answer the same request (every device of a fleet subscribes to the same request
        topic), the senders to wait for, as named by the I(sender_key) field of their JSON answers. The request
        is sent again while some have not answered; RV(answers) holds one answer per sender and RV(missing)
        those that did not answer within I(timeout), which is not an error of this module (fail the hosts
        concerned in the play).
      - Empty (default) returns the first answer, and no answer is an error.
    type: list
    elements: str
    default: []
  sender_key:
    description:
      - Field of a JSON answer that names its sender (the detector's answers carry C(thing_name)).
    type: str
    default: thing_name
"""

EXAMPLES = r"""
- name: The seed's check through Greengrass
  edgeml.greengrass.iot_mqtt_request:
    endpoint: "{{ iot_endpoint }}"
    root_ca: /etc/ssl/amazon-root-ca-1.pem
    certificate: "{{ results_dir }}/smoke-test-client.cert.pem"
    private_key: "{{ results_dir }}/smoke-test-client.key.pem"
    client_id: edgeml-smoke-test
    request_topic: blog/infer/input
    answer_topic: blog/infer/output
    payload: {image_path: /var/lib/edgeml-smoke-test/sample.png}
  register: answer
"""

RETURN = r"""
answer:
  description: The answer's payload, parsed when it is JSON (else the text).
  returned: without I(expect_answers_from)
  type: raw
answer_topic:
  description: The topic the answer arrived on.
  returned: without I(expect_answers_from)
  type: str
seconds:
  description:
    - Time from the request that was answered to its answer; with I(expect_answers_from), per sender.
  returned: success
  type: raw
requests:
  description: How many times the request was published.
  returned: success
  type: int
answers:
  description: With I(expect_answers_from), the answer of each expected sender that answered.
  returned: with I(expect_answers_from)
  type: dict
missing:
  description: With I(expect_answers_from), the expected senders that did not answer within I(timeout).
  returned: with I(expect_answers_from)
  type: list
  elements: str
"""

import json  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    HAS_PAHO = True
except ImportError:  # pragma: no cover - reported by the module
    HAS_PAHO = False

MAX_PAYLOAD_BYTES = 128 * 1024  # AWS IoT Core quotas: message size


def check_inputs(params):
    """Every problem with the inputs, named, before anything is sent."""
    problems = []
    for name in ("request_topic", "answer_topic"):
        topic = params[name]
        if not topic or "+" in topic or "#" in topic or topic.startswith("$"):
            problems.append("%s %r must be a literal topic (no + or #, not a $ reserved topic)" % (name, topic))
    if params["request_topic"] == params["answer_topic"]:
        problems.append("request_topic and answer_topic must differ (the request would come back as its answer)")
    for name in ("root_ca", "certificate", "private_key"):
        if not os.path.isfile(params[name]):
            problems.append("%s %s is not a readable file" % (name, params[name]))
    if params["timeout"] < 1 or params["resend_every"] < 1:
        problems.append("timeout and resend_every must be at least 1 second")
    if not 1 <= params["port"] <= 65535:
        problems.append("port %s is not a TCP port" % params["port"])
    return problems


def encode_payload(payload):
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return data.encode("utf-8")


def sender_of(payload, key):
    try:
        answer = json.loads(payload)
    except ValueError:
        return None
    return answer.get(key) if isinstance(answer, dict) else None


def parsed(payload):
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", errors="replace")


def request_answer(params, data):
    """Connect, subscribe, publish until the answer (or every expected answer) arrives; None: no answer."""
    messages = queue.Queue()
    events = {"connack": queue.Queue(), "suback": queue.Queue(), "puback": queue.Queue()}
    address = (params["address"] or params["endpoint"], params["port"])

    class Client(mqtt.Client):
        # TCP to `address`; TLS keeps the endpoint's name (SNI and host name check).
        def _create_socket_connection(self):
            return socket.create_connection(address, timeout=30)

    client = Client(CallbackAPIVersion.VERSION2, client_id=params["client_id"], protocol=mqtt.MQTTv311)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=params["root_ca"])
    context.load_cert_chain(params["certificate"], params["private_key"])
    client.tls_set_context(context)
    client.on_connect = lambda c, u, flags, code, props: events["connack"].put(code.value)
    client.on_subscribe = lambda c, u, mid, codes, props: events["suback"].put([code.value for code in codes])
    client.on_publish = lambda c, u, mid, code, props: events["puback"].put(mid)
    client.on_message = lambda c, u, message: messages.put((message.topic, message.payload))
    client.connect(params["endpoint"], params["port"], keepalive=30)
    client.loop_start()
    try:
        try:
            code = events["connack"].get(timeout=30)
        except queue.Empty:
            raise RuntimeError("no CONNACK from %s:%s within 30 s" % address) from None
        if code != 0:
            raise RuntimeError(
                "AWS IoT Core refused the connection (CONNACK %s): is the certificate ACTIVE and does "
                "its policy allow iot:Connect as %s?" % (code, params["client_id"])
            )
        client.subscribe(params["answer_topic"], qos=1)
        try:
            codes = events["suback"].get(timeout=30)
        except queue.Empty:
            raise RuntimeError("no SUBACK for %s within 30 s" % params["answer_topic"]) from None
        if any(code >= 0x80 for code in codes):
            raise RuntimeError(
                "AWS IoT Core refused the subscription to %s: the policy must allow iot:Subscribe on "
                "topicfilter/%s" % (params["answer_topic"], params["answer_topic"])
            )
        deadline = time.monotonic() + params["timeout"]
        expected = set(params["expect_answers_from"])
        answers, seconds, sent = {}, {}, 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            client.publish(params["request_topic"], data, qos=1)
            sent += 1
            try:
                events["puback"].get(timeout=30)
            except queue.Empty:
                raise RuntimeError(
                    "no PUBACK for the request on %s: AWS IoT Core closes the connection when the "
                    "policy does not allow iot:Publish there" % params["request_topic"]
                ) from None
            resend_at = min(deadline, time.monotonic() + params["resend_every"])
            while time.monotonic() < resend_at:
                try:
                    topic, payload = messages.get(timeout=max(0.05, resend_at - time.monotonic()))
                except queue.Empty:
                    break
                if not expected:
                    return {"topic": topic, "payload": payload, "seconds": time.monotonic() - started, "sent": sent}
                sender = sender_of(payload, params["sender_key"])
                if sender in expected and sender not in answers:
                    answers[sender], seconds[sender] = payload, time.monotonic() - started
                if set(answers) == expected:
                    return {"answers": answers, "seconds": seconds, "sent": sent}
        return {"answers": answers, "seconds": seconds, "sent": sent} if expected else None
    finally:
        client.disconnect()
        client.loop_stop()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            endpoint=dict(type="str", required=True),
            port=dict(type="int", default=8883),
            address=dict(type="str"),
            root_ca=dict(type="path", required=True),
            certificate=dict(type="path", required=True),
            private_key=dict(type="path", required=True, no_log=False),
            client_id=dict(type="str", required=True),
            request_topic=dict(type="str", required=True),
            answer_topic=dict(type="str", required=True),
            payload=dict(type="raw", required=True),
            timeout=dict(type="int", default=120),
            resend_every=dict(type="int", default=10),
            expect_answers_from=dict(type="list", elements="str", default=[]),
            sender_key=dict(type="str", default="thing_name", no_log=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    problems = check_inputs(params)
    data = encode_payload(params["payload"])
    if len(data) > MAX_PAYLOAD_BYTES:
        problems.append("payload is %d bytes, AWS IoT Core takes at most %d" % (len(data), MAX_PAYLOAD_BYTES))
    if problems:
        module.fail_json(msg="iot_mqtt_request: " + "; ".join(problems))
    if not HAS_PAHO:
        module.fail_json(msg=missing_required_lib("paho-mqtt"))
    result = dict(changed=False, msg="check mode: nothing published") if module.check_mode else ask(module, data)
    module.exit_json(**result)


def ask(module, data):
    """Publish the request until the answers arrive; the module's result, or a failure naming what is missing."""
    params = module.params
    try:
        answered = request_answer(params, data)
    except (RuntimeError, OSError, ssl.SSLError) as error:
        module.fail_json(msg="iot_mqtt_request: %s" % error)
    if answered is None:
        module.fail_json(
            msg="iot_mqtt_request: no answer on %s within %d s (request on %s sent every %d s)"
            % (params["answer_topic"], params["timeout"], params["request_topic"], params["resend_every"])
        )
    if params["expect_answers_from"]:
        return dict(
            changed=False,
            answers={sender: parsed(payload) for sender, payload in answered["answers"].items()},
            seconds={sender: round(value, 3) for sender, value in answered["seconds"].items()},
            missing=sorted(set(params["expect_answers_from"]) - set(answered["answers"])),
            requests=answered["sent"],
        )
    return dict(
        changed=False,
        answer=parsed(answered["payload"]),
        answer_topic=answered["topic"],
        seconds=round(answered["seconds"], 3),
        requests=answered["sent"],
    )


if __name__ == "__main__":
    main()
