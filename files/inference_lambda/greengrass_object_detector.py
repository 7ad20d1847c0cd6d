"""AWS IoT Greengrass V1 Lambda entry point of the object detector.

Handler: ``greengrass_object_detector.function_handler`` (``lambda_handler`` is the
same function, for the seed's ``main.lambda_handler`` naming). Run it as a
long-lived (pinned) Lambda with the SSD model as a machine-learning resource
(default ``/ml/od/deploy_model_algo_1``): the model is loaded once per container.

Input event (subscription on ``blog/infer/input``): ``{"image_path": "/path/frame.jpg"}``;
the seed's ``{"filepath": ...}`` is accepted too. Each event produces one message on
``OUTPUT_TOPIC`` (default ``blog/infer/output``): the detections
(``object_detector.InferenceService``) or ``{"error": ..., "image_path": ...}``.
Settings are environment variables, listed in ``object_detector``'s docstring.

On a core, messages go through ``greengrasssdk.client("iot-data")``, imported only
when the first message is published. Elsewhere call ``set_publisher(publish)``
with a ``publish(topic, payload_bytes)`` callable first.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional

from object_detector import CorePublisher, InferenceService, Publisher

LOG = logging.getLogger(__name__)

_publish = CorePublisher()
_service = None  # type: Optional[InferenceService]


def set_publisher(publish: Optional[Publisher]) -> None:
    """Send messages through ``publish(topic, payload_bytes)``; None goes back to greengrasssdk."""
    _publish.set(publish)


def reset() -> None:
    """Forget the loaded model and settings, so the next event reads the environment again."""
    global _service
    _service = None


def service() -> InferenceService:
    global _service
    if _service is None:
        _service = InferenceService(_publish)
    return _service


def function_handler(event: Any, context: Any) -> Dict[str, Any]:
    return service().handle(event)


lambda_handler = function_handler


def _preload_on_core() -> None:
    """A pinned Lambda starts before its first event: load the model now, not on the first frame."""
    if not (os.environ.get("AWS_IOT_THING_NAME") or os.environ.get("DETECTOR_PRELOAD") == "1"):
        return
    try:
        service().detector()
    except Exception as exc:  # noqa: BLE001 - reported again, on the output topic, with the first event
        LOG.error("model not loaded at start-up (%s); retrying on the first event", exc)


_preload_on_core()
