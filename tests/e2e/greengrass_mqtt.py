"""Helpers for talking to simulated Greengrass devices over the test bed's MQTT broker (test equipment).

Used by tests/e2e/test_greengrass_v2_through_the_bed.py and bench/greengrass_v2_through_the_bed.py:

- ``Requester``: a client with its own certificate and a policy for one request topic and one answer topic
  (publish on the one, subscribe and receive on the other, nothing else), connected to the bed's broker;
- ``Requester.ask``: publish a request until an answer arrives, timed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.iot_data_plane.client import DataPlaneClient


@dataclass
class Answer:
    payload: dict
    seconds: float  # from the request that was answered to its answer
    requests: int  # how many were sent


class Requester:
    def __init__(self, endpoint, client, folder: Path, client_id: str, request_topic: str, answer_topic: str):
        """endpoint: LocalAwsEndpoint; client: a boto3 client factory (service -> client) of that endpoint."""
        iot = client("iot")
        region = endpoint.environment()["AWS_REGION"]
        account = client("sts").get_caller_identity()["Account"]
        arn = f"arn:aws:iot:{region}:{account}"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/{client_id}"},
                {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{arn}:topic/{request_topic}"},
                {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/{answer_topic}"},
                {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{arn}:topic/{answer_topic}"},
            ],
        }
        keys = iot.create_keys_and_certificate(setAsActive=True)
        iot.create_policy(policyName=client_id, policyDocument=json.dumps(policy))
        iot.attach_policy(policyName=client_id, target=keys["certificateArn"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cert.pem").write_text(keys["certificatePem"])
        (folder / "key.pem").write_text(keys["keyPair"]["PrivateKey"])
        (folder / "key.pem").chmod(0o600)
        data_plane = endpoint.data_plane()
        (folder / "ca.pem").write_text(data_plane["root_ca_pem"])
        host = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
        self.request_topic, self.answer_topic = request_topic, answer_topic
        self.mqtt = DataPlaneClient(
            data_plane, host, client_id, str(folder / "cert.pem"), str(folder / "key.pem"), str(folder / "ca.pem")
        )
        connected = self.mqtt.connect()
        if not connected.ok:
            raise RuntimeError(f"the requester could not connect: {connected.detail}")
        subscribed = self.mqtt.subscribe(answer_topic)
        if not subscribed.ok:
            raise RuntimeError(f"the requester could not subscribe to {answer_topic}: {subscribed.detail}")

    def ask(self, request: dict, timeout: float = 120, resend_every: float = 10) -> Answer | None:
        """Publish ``request`` until an answer comes back; None after ``timeout``.

        Sent again while none came: a deployment is SUCCEEDED once its components run (as on AWS), which can be
        before the detector has loaded its model and subscribed, and a message nobody is subscribed to is lost.
        """
        while self.mqtt.receive(timeout=0.05) is not None:
            pass  # an answer left over from an earlier request
        deadline = time.monotonic() + timeout
        sent = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            published = self.mqtt.publish(self.request_topic, json.dumps(request))
            if not published.ok:
                raise RuntimeError(f"the broker refused the request: {published.detail}")
            sent += 1
            received = self.mqtt.receive(timeout=min(resend_every, max(0.1, deadline - time.monotonic())))
            if received is not None:
                topic, payload = received
                if topic != self.answer_topic:
                    raise RuntimeError(f"an answer on {topic}, expected {self.answer_topic}")
                return Answer(json.loads(payload), time.perf_counter() - started, sent)
        return None

    def ask_devices(self, request: dict, things: set[str], timeout: float = 180, resend_every: float = 10) -> dict:
        """Publish ``request`` (again every ``resend_every`` s) until each device of ``things`` answered (every
        device of a fleet subscribes to the same topic and names itself in ``thing_name``); {thing: payload} of
        those that did within ``timeout``."""
        while self.mqtt.receive(timeout=0.05) is not None:
            pass
        answers: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(answers) < things:
            published = self.mqtt.publish(self.request_topic, json.dumps(request))
            if not published.ok:
                raise RuntimeError(f"the broker refused the request: {published.detail}")
            until = min(deadline, time.monotonic() + resend_every)
            while time.monotonic() < until and set(answers) < things:
                received = self.mqtt.receive(timeout=max(0.1, until - time.monotonic()))
                if received is not None:
                    payload = json.loads(received[1])
                    answers.setdefault(payload.get("thing_name"), payload)
        return {thing: answer for thing, answer in answers.items() if thing in things}

    def close(self) -> None:
        self.mqtt.close()
