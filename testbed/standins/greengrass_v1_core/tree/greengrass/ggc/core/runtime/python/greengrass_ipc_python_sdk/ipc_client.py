"""The functions' side of the stand-in core's IPC (TEST EQUIPMENT), with the interface greengrasssdk calls.

HTTP on the core's local address, under ``/2016-11-01/functions/<function ARN>``: POST posts work (answer: the
``X-Amz-InvocationId`` header), GET ``.../work`` gets the function's next work item, POST ``.../work`` posts its
result (or, with ``X-Amz-Function-Error``, the handler's error), GET with ``X-Amz-InvocationId`` gets a result.
The token the core gave the function goes in ``Authorization``. A real core listens on localhost:8000; the bed's
devices share the host's network, so the stand-in tells each function its core's address in
``EDGEML_STANDIN_IPC_ADDRESS``.
"""

import collections
import json
import os
from urllib.error import URLError
from urllib.request import Request, urlopen

from greengrass_common.env_vars import AUTH_TOKEN

WorkItem = collections.namedtuple("WorkItem", ["invocation_id", "payload", "client_context"])
GetWorkResultOutput = collections.namedtuple("GetWorkResultOutput", ["payload", "func_err"])


class IPCException(Exception):
    pass


class IPCClient:
    def __init__(self, endpoint="localhost", port=8000):
        address = os.environ.get("EDGEML_STANDIN_IPC_ADDRESS")
        if address:
            endpoint, _, port = address.rpartition(":")
        self.base = "http://%s:%s/2016-11-01/functions/" % (endpoint, port)

    def _call(self, url, data=None, headers=None):
        request = Request(url, data)  # noqa: S310 - http to the core's local address
        request.add_header("Authorization", AUTH_TOKEN or "")
        for key, value in (headers or {}).items():
            if value is not None:
                request.add_header(key, value)
        try:
            return urlopen(request)  # noqa: S310 - the core's local address
        except URLError as error:
            raise IPCException(str(error)) from None

    def post_work(self, function_arn, input_bytes, client_context, invocation_type="RequestResponse"):
        if isinstance(client_context, bytes):
            client_context = client_context.decode()
        answer = self._call(
            self.base + function_arn,
            input_bytes or b"",
            {"X-Amz-Client-Context": client_context, "X-Amz-Invocation-Type": invocation_type},
        )
        return answer.info().get("X-Amz-InvocationId")

    def get_work(self, function_arn):
        answer = self._call(self.base + function_arn + "/work")
        return WorkItem(
            invocation_id=answer.info().get("X-Amz-InvocationId"),
            payload=answer.read(),
            client_context=answer.info().get("X-Amz-Client-Context"),
        )

    def post_work_result(self, function_arn, work_item):
        self._call(
            self.base + function_arn + "/work",
            work_item.payload or b"",
            {"X-Amz-InvocationId": work_item.invocation_id},
        )

    def post_handler_err(self, function_arn, invocation_id, handler_err):
        payload = json.dumps({"errorMessage": handler_err}).encode("utf-8")
        self._call(
            self.base + function_arn + "/work",
            payload,
            {"X-Amz-InvocationId": invocation_id, "X-Amz-Function-Error": "Handled"},
        )

    def get_work_result(self, function_arn, invocation_id):
        answer = self._call(self.base + function_arn, None, {"X-Amz-InvocationId": invocation_id})
        return GetWorkResultOutput(payload=answer.read(), func_err=answer.info().get("X-Amz-Function-Error"))
