"""The stand-in V1 core's IPC and routing, with the real greengrasssdk (1.6.1) inside a real Lambda process.

The core's MQTT connection is replaced by a recorder (the broker side is covered by the bed's data-plane tests
and the e2e tests); everything else is the stand-in's own: its IPC server, its Python Lambda runtime, and the
group's subscriptions deciding where each message goes.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import greengrasssdk
import pytest

CORE_DIR = Path(__file__).resolve().parents[3] / "testbed/standins/greengrass_v1_core/tree/greengrass/ggc/core"
ALIAS = "arn:aws:lambda:us-east-1:123456789012:function:detector:live"
OTHER = "arn:aws:lambda:us-east-1:123456789012:function:other:live"
HANDLER = """
import json
import greengrasssdk

client = greengrasssdk.client("iot-data")


def function_handler(event, context):
    topic = event.get("answer_on", "blog/infer/output")
    answer = {"got": event, "subject": context.client_context.custom["subject"]}
    client.publish(topic=topic, payload=json.dumps(answer).encode())  # bytes: the core's IPC client posts bytes
    return {"ok": True}
"""


def load_deployer():
    spec = importlib.util.spec_from_file_location("standin_deployer", CORE_DIR / "standin_deployer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deployer = load_deployer()


class RecordingConnection:
    """Stands for the core's MQTT connection to AWS IoT: records what the core publishes."""

    disconnected = False

    def __init__(self):
        self.published = []

    def close(self):
        pass

    def publish(self, topic, payload, qos=1):
        self.published.append((topic, json.loads(payload)))

        class Outcome:
            ok = True

        return Outcome()


@pytest.fixture
def core(tmp_path):
    ggc = tmp_path / "greengrass"
    (ggc / "certs").mkdir(parents=True)
    config = {
        "coreThing": {
            "thingArn": "arn:aws:iot:us-east-1:123456789012:thing/edge-core-1",
            "iotHost": "a1-ats.iot.us-east-1.amazonaws.com",
            "ggHost": "greengrass-ats.iot.us-east-1.amazonaws.com",
            "certPath": "core.pem",
            "keyPath": "core.key",
        }
    }
    running = deployer.V1Core(config, ggc)
    running.mqtt = RecordingConnection()
    code = tmp_path / "code"
    code.mkdir()
    (code / "handler.py").write_text(HANDLER)
    sdk = Path(greengrasssdk.__file__).parent
    os.symlink(sdk, code / "greengrasssdk")  # packaged with the function, as the detector role does
    function = deployer.Function(
        {
            "FunctionArn": ALIAS,
            "Handler": "handler.function_handler",
            "Runtime": "python3.8",
            "FunctionConfiguration": {"Pinned": True, "EncodingType": "json"},
        },
        code,
        sys.executable,
        {"Uid": os.getuid(), "Gid": os.getgid()},
    )
    running.functions = {ALIAS: function}
    running.subscriptions = [
        {"Id": "in", "Source": "cloud", "Subject": "blog/infer/input", "Target": ALIAS},
        {"Id": "out", "Source": ALIAS, "Subject": "blog/infer/+", "Target": "cloud"},
    ]
    running.start_function(function)
    yield running, function
    running.shutdown()


def wait_for(predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_topic_filters_match_as_mqtt_does():
    assert deployer.topic_matches("blog/infer/input", "blog/infer/input")
    assert deployer.topic_matches("blog/+/input", "blog/infer/input")
    assert deployer.topic_matches("blog/#", "blog/infer/input")
    assert not deployer.topic_matches("blog/+", "blog/infer/input")
    assert not deployer.topic_matches("blog/infer/input", "blog/infer/output")
    subscriptions = [
        {"Source": "cloud", "Subject": "a/#", "Target": ALIAS},
        {"Source": ALIAS, "Subject": "b", "Target": "cloud"},
    ]
    assert deployer.routes(subscriptions, "cloud", "a/x") == [ALIAS]
    assert deployer.routes(subscriptions, ALIAS, "a/x") == []


def test_cloud_message_reaches_the_function_whose_greengrasssdk_publish_is_routed_to_the_cloud(core):
    running, _function = core
    running.route("cloud", "blog/infer/input", json.dumps({"image_path": "/tmp/x.png"}).encode())
    assert wait_for(lambda: running.mqtt.published), "the function's answer never reached the core's connection"
    topic, payload = running.mqtt.published[0]
    assert topic == "blog/infer/output"
    assert payload == {"got": {"image_path": "/tmp/x.png"}, "subject": "blog/infer/input"}


def test_a_publish_no_subscription_allows_is_dropped(core):
    running, _function = core
    running.route("cloud", "blog/infer/input", json.dumps({"answer_on": "elsewhere/out"}).encode())
    running.route("cloud", "blog/infer/input", json.dumps({"answer_on": "blog/infer/output"}).encode())
    assert wait_for(lambda: running.mqtt.published)
    time.sleep(0.5)
    assert [topic for topic, _payload in running.mqtt.published] == ["blog/infer/output"]
    # Nothing from the cloud on a topic without a subscription reaches the function.
    running.route("cloud", "not/subscribed", b"{}")
    time.sleep(0.5)
    assert len(running.mqtt.published) == 1


def test_ipc_refuses_unknown_tokens_and_publishing_as_another_function(core):
    running, function = core
    url = "http://%s:%d/2016-11-01/functions/%s" % (*running.ipc_address, deployer.ROUTER_ARN)

    def post(token, source):
        context = base64.b64encode(json.dumps({"custom": {"subject": "blog/infer/output", "source": source}}).encode())
        headers = {"Authorization": token, "X-Amz-Client-Context": context}
        request = urllib.request.Request(url, b"{}", headers)  # noqa: S310 - the stand-in on loopback
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - the stand-in on loopback
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    assert post("not-a-token", ALIAS) == 403
    assert post(function.token, OTHER) == 403
    assert post(function.token, ALIAS) == 202
    assert wait_for(lambda: running.mqtt.published)
