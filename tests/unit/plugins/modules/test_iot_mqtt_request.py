"""iot_mqtt_request's input checks and answer collection rules (the MQTT path itself runs in the fleet e2e test,
tests/e2e/test_site_fleet.py, through the bed's broker and real Greengrass V2 devices)."""

from __future__ import annotations

import json

import pytest
from ansible_collections.edgeml.greengrass.plugins.modules import iot_mqtt_request as module

GOOD = {
    "request_topic": "blog/infer/input",
    "answer_topic": "blog/infer/output",
    "timeout": 120,
    "resend_every": 10,
    "port": 8883,
}


@pytest.fixture
def params(tmp_path):
    files = {}
    for name in ("root_ca", "certificate", "private_key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("pem")
        files[name] = str(path)
    return {**GOOD, **files}


def test_good_inputs_have_no_problem(params):
    assert module.check_inputs(params) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"request_topic": "blog/+/input"}, "request_topic 'blog/+/input' must be a literal topic"),
        ({"answer_topic": "blog/#"}, "answer_topic 'blog/#' must be a literal topic"),
        ({"request_topic": "$aws/things/x/shadow/get"}, "not a $ reserved topic"),
        ({"answer_topic": "blog/infer/input"}, "request_topic and answer_topic must differ"),
        ({"root_ca": "/nonexistent/ca.pem"}, "root_ca /nonexistent/ca.pem is not a readable file"),
        ({"timeout": 0}, "timeout and resend_every must be at least 1 second"),
        ({"port": 70000}, "port 70000 is not a TCP port"),
    ],
)
def test_each_wrong_input_is_named(params, change, named):
    problems = module.check_inputs({**params, **change})
    assert any(named in problem for problem in problems), problems


def test_answers_are_told_apart_by_their_sender_field():
    assert module.sender_of(json.dumps({"thing_name": "edge-03", "detections": []}).encode(), "thing_name") == "edge-03"
    assert module.sender_of(b"not json", "thing_name") is None
    assert module.sender_of(b"[1, 2]", "thing_name") is None
    assert module.parsed(b'{"a": 1}') == {"a": 1}
    assert module.parsed(b"text") == "text"


def test_payloads_are_sent_as_json_unless_text():
    assert json.loads(module.encode_payload({"image_path": "/x.png"})) == {"image_path": "/x.png"}
    assert module.encode_payload("raw text") == b"raw text"
