"""AWS IoT Greengrass V2 entry point of the object detector (a native component's Run lifecycle).

The component runs this with the device's inference runtime (``/opt/edgeml/inference-venv``) and the
inference code (``object_detector``) on ``PYTHONPATH``; settings are the environment variables listed in
``object_detector``'s docstring. With ``--check-model`` it only loads the model and exits (0: it loads): the
component's Install step runs that, because the nucleus counts a deployment as succeeded as soon as its
components reach RUNNING (the nucleus's DeploymentConfigMerger.waitForServicesToStart), so a model that fails
only when Run loads it would be reported SUCCEEDED and then go BROKEN; an Install that fails three times fails
the deployment, and ``ROLLBACK`` restores the previous one. Run loads the model again before anything is
subscribed. Events arrive on ``INPUT_TOPIC`` through the nucleus's IoT Core MQTT proxy (IPC,
``awsiotsdk``), and each produces one message on ``OUTPUT_TOPIC``, as in the V1 Lambda. When the nucleus ends
the subscription (its IPC connection is gone), the entry point exits 1, so the nucleus restarts the component.
"""

import logging
import os
import sys
import threading

from object_detector import InferenceService

LOG = logging.getLogger("greengrass_v2_detector")


def component_of(artifacts_path: str) -> dict:
    """{"name", "version"} of the component from its artifacts folder (<root>/packages/artifacts/<name>/<version>,
    component-recipe-reference.md, ``{artifacts:path}``), so that each answer says which version made it."""
    parts = [part for part in artifacts_path.split("/") if part]
    return {"name": parts[-2], "version": parts[-1]} if len(parts) >= 2 else {}


def check_model() -> int:
    """Load the model as Run will (same settings from the environment) and say whether it loads."""
    try:
        InferenceService(lambda topic, payload: None).detector()
    except Exception as error:  # noqa: BLE001 - whatever MXNet or the settings raise is the answer
        LOG.error("the model does not load: %s", error)
        return 1
    LOG.info("the model loads")
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    if sys.argv[1:] == ["--check-model"]:
        return check_model()
    input_topic = os.environ.get("INPUT_TOPIC", "blog/infer/input")
    try:
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
        from awsiot.greengrasscoreipc.model import QOS
    except ImportError:
        LOG.error("awsiotsdk is not importable by %s: install it in the inference runtime", sys.executable)
        return 1
    ipc = GreengrassCoreIPCClientV2()

    def publish(topic: str, payload: bytes) -> None:
        ipc.publish_to_iot_core(topic_name=topic, qos=QOS.AT_LEAST_ONCE, payload=payload)

    component = component_of(os.environ.get("COMPONENT_ARTIFACTS_PATH", ""))
    service = InferenceService(publish, answer_fields={"component": component} if component else None)
    service.detector()  # fail now, not on the first event, when the model does not load
    LOG.info("model loaded; listening on %s", input_topic)

    def on_event(event) -> None:
        # The raw bytes: a payload that is not a JSON event gets an error message on OUTPUT_TOPIC, like in V1.
        service.handle(event.message.payload)

    # The subscription ends only when the connection to the nucleus does: exit non-zero so the nucleus restarts
    # the component (or reports it broken) instead of leaving it running deaf.
    closed = threading.Event()
    ipc.subscribe_to_iot_core(
        topic_name=input_topic, qos=QOS.AT_LEAST_ONCE, on_stream_event=on_event, on_stream_closed=closed.set
    )
    closed.wait()
    LOG.error("the subscription to %s was closed by the nucleus", input_topic)
    return 1


if __name__ == "__main__":
    sys.exit(main())
