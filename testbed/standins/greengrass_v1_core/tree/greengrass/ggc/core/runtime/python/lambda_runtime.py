"""Stand-in for the V1 core's Python Lambda runtime (TEST EQUIPMENT): runs one function's handler.

The stand-in core (standin_deployer.py) starts it with the function's environment, in the unpacked package's
folder. It imports the handler's module once (a pinned function's module-level code runs at start, as on a core),
then loops: get the next work item over the core's IPC, call ``handler(event, context)``, post the result, or the
handler's error. With EncodingType json the event is the decoded JSON payload (raw bytes when it is not JSON).
"""

import base64
import importlib
import json
import os
import sys
import traceback

from greengrass_ipc_python_sdk.ipc_client import IPCClient, WorkItem


class ClientContext:
    def __init__(self, encoded):
        try:
            self.custom = json.loads(base64.b64decode(encoded or "")).get("custom") or {}
        except (ValueError, TypeError):
            self.custom = {}


class Context:
    """What a V1 handler's context offers: the function's identity and the message's subject."""

    def __init__(self, arn, invocation_id, client_context):
        self.invoked_function_arn = arn
        self.function_name = arn.split(":")[6]
        self.function_version = arn.split(":")[7] if len(arn.split(":")) > 7 else "$LATEST"
        self.aws_request_id = invocation_id
        self.client_context = ClientContext(client_context)


def main():
    arn = os.environ["MY_FUNCTION_ARN"]
    sys.path.insert(0, os.environ["EDGEML_STANDIN_LAMBDA_CODE"])
    module_name, _, handler_name = os.environ["EDGEML_STANDIN_LAMBDA_HANDLER"].rpartition(".")
    handler = getattr(importlib.import_module(module_name), handler_name)
    json_encoded = os.environ.get("ENCODING_TYPE", "json") == "json"
    client = IPCClient()
    while True:
        work = client.get_work(arn)
        event = work.payload
        if json_encoded and event:
            try:
                event = json.loads(event.decode("utf-8"))
            except ValueError:
                pass
        try:
            result = handler(event, Context(arn, work.invocation_id, work.client_context))
        except Exception as error:  # noqa: BLE001 - reported to the caller, as the core's runtime does
            traceback.print_exc()
            client.post_handler_err(arn, work.invocation_id, "%s: %s" % (type(error).__name__, error))
            continue
        payload = json.dumps(result).encode("utf-8") if result is not None else b""
        client.post_work_result(arn, WorkItem(work.invocation_id, payload, None))


if __name__ == "__main__":
    main()
