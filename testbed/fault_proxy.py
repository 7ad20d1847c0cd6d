"""A fault-injecting HTTP proxy between AWS clients and the local AWS endpoint (test equipment).

It answers a seeded share of requests the way each AWS service answers when it throttles or fails, so that the
collection's retries and its handling of repeated writes are tested against the errors AWS really sends, not
against exceptions raised in-process:

- ``throttle``: refused before reaching the endpoint, with the service's throttling error;
- ``error``: refused before reaching the endpoint, with the service's internal error;
- ``lost``: forwarded and executed by the endpoint, then answered with the service's internal error instead of the
  endpoint's answer (a response lost on the way back: the client's retry repeats a write that already happened).

- ``reject``: (aimed rules only) refused before reaching the endpoint with the service's bad-request error, which no
  client retries: a step that fails for good (IoT ``InvalidRequestException``, Greengrass V1 ``BadRequestException``,
  Greengrass V2 ``ValidationException``, Lambda ``InvalidParameterValueException``, IAM ``InvalidInput``, all 400 in
  the botocore models; S3 400 ``InvalidRequest``; STS 400 ``InvalidParameterValue`` of the Common Errors page);
- ``hold``: (aimed rules only) the request is held, never forwarded, until ``FaultProxy.release()``, then
  answered with the internal error: a test kills the client while it waits, at a known point of its run.

Faults are drawn at random (seeded shares per kind), or aimed: a ``FaultRule`` gives one kind of fault to the first
N requests whose method and path match (``FaultRule("lost", "POST", r"/greengrass/v2/deployments$")``: the first
CreateDeployment is executed and its answer lost). Aimed rules are applied before the random draw.

Error responses per protocol, as botocore parses them (and as the services send them):
- rest-json (IoT, Greengrass V1/V2, Lambda): status from the error shape's ``httpStatusCode`` in the service's
  botocore model, ``x-amzn-ErrorType: <Code>`` header and ``{"message": ...}`` body. IoT ``ThrottlingException``
  400, ``InternalFailureException`` 500; Greengrass V2 ``ThrottlingException`` 429, ``InternalServerException``
  500; Lambda ``TooManyRequestsException`` 429, ``ServiceException`` 500; Greengrass V1's model names no
  throttling error: it gets the common ``ThrottlingException`` 400 of AWS's "Common Errors" API reference page,
  and ``InternalServerErrorException`` 500.
- rest-xml (S3): ``503 SlowDown`` and ``500 InternalError`` with S3's ``<Error><Code>`` body (S3 API reference,
  "Error responses").
- query (IAM, STS): ``400 Throttling`` and ``500 ServiceFailure`` (IAM) / ``InternalFailure`` (STS) in an
  ``<ErrorResponse><Error>`` body (Common Errors page).

The service of a request is read from its SigV4 credential scope (Greengrass V2, which signs as ``greengrass`` like
V1, by its ``/greengrass/v2/`` paths). Not emulated: throttling that depends on the
request rate (the faults are a fixed share, seeded), partial or slow responses, connection resets.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SCOPE_RE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")

# (protocol, throttling (status, code), internal error (status, code)) per botocore service name.
SERVICE_ERRORS = {
    "iot": ("rest-json", (400, "ThrottlingException"), (500, "InternalFailureException")),
    "greengrass": ("rest-json", (400, "ThrottlingException"), (500, "InternalServerErrorException")),
    "greengrassv2": ("rest-json", (429, "ThrottlingException"), (500, "InternalServerException")),
    "lambda": ("rest-json", (429, "TooManyRequestsException"), (500, "ServiceException")),
    "s3": ("rest-xml", (503, "SlowDown"), (500, "InternalError")),
    "iam": ("query", (400, "Throttling"), (500, "ServiceFailure")),
    "sts": ("query", (400, "Throttling"), (500, "InternalFailure")),
}


# The service's own "bad request" error: (status, code), as above.
REJECT_ERRORS = {
    "iot": (400, "InvalidRequestException"),
    "greengrass": (400, "BadRequestException"),
    "greengrassv2": (400, "ValidationException"),
    "lambda": (400, "InvalidParameterValueException"),
    "s3": (400, "InvalidRequest"),
    "iam": (400, "InvalidInput"),
    "sts": (400, "InvalidParameterValue"),
}


class _QuietServer(ThreadingHTTPServer):
    """A client that is killed (the SIGKILL tests and bench) resets its connections: not an error of the proxy."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@dataclass
class Injected:
    service: str
    method: str
    path: str
    fault: str  # "throttle", "error", "lost"


@dataclass
class FaultRule:
    """After the first ``after`` requests matching ``method`` (a regex matched in full: "POST", or
    "POST|PUT|DELETE|PATCH") and the ``path`` regex (searched in the path without its query string), which pass
    untouched, the next ``times`` ones get ``fault``. ``matched`` counts every matching request."""

    fault: str
    method: str
    path: str
    times: int = 1
    after: int = 0
    matched: int = 0

    def __post_init__(self):
        if self.fault not in ("throttle", "error", "lost", "reject", "hold"):
            raise ValueError(f"fault must be throttle, error, lost, reject or hold, not {self.fault!r}")
        self._method = re.compile(self.method)
        self._path = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return bool(self._method.fullmatch(method)) and bool(self._path.search(path.split("?", 1)[0]))


@dataclass
class FaultPlan:
    """Shares of requests (0..1) to fault, per kind; only for the services named (all known ones when empty)."""

    throttle: float = 0.0
    error: float = 0.0
    lost: float = 0.0
    services: tuple[str, ...] = ()
    seed: int = 0
    rules: list[FaultRule] = field(default_factory=list)
    log: list[Injected] = field(default_factory=list)
    forwarded: int = 0

    def __post_init__(self):
        self._random = random.Random(self.seed)  # noqa: S311 (seeded on purpose: a run can be replayed)
        self._lock = threading.Lock()

    def draw(self, service: str, method: str = "", path: str = "") -> str | None:
        if service not in SERVICE_ERRORS or (self.services and service not in self.services):
            return None
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.matched += 1
                    if rule.matched > rule.after and rule.times > 0:
                        rule.times -= 1
                        return rule.fault
            roll = self._random.random()
        if roll < self.throttle:
            return "throttle"
        if roll < self.throttle + self.error:
            return "error"
        if roll < self.throttle + self.error + self.lost:
            return "lost"
        return None

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for entry in self.log:
            found[entry.fault] = found.get(entry.fault, 0) + 1
        return found


def error_response(service: str, fault: str) -> tuple[int, dict[str, str], bytes]:
    protocol, throttling, internal = SERVICE_ERRORS[service]
    status, code = {"throttle": throttling, "reject": REJECT_ERRORS[service]}.get(fault, internal)
    message = {
        "throttle": "Rate exceeded",
        "reject": "Request refused (injected by the test bed's fault proxy)",
    }.get(fault, "Internal failure (injected by the test bed's fault proxy)")
    if protocol == "rest-json":
        body = json.dumps({"message": message}).encode()
        return status, {"Content-Type": "application/json", "x-amzn-ErrorType": code}, body
    if protocol == "rest-xml":
        body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>0</RequestId></Error>".encode()
        return status, {"Content-Type": "application/xml"}, body
    kind = "Sender" if fault in ("throttle", "reject") else "Receiver"
    body = (
        f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>0</RequestId></ErrorResponse>"
    ).encode()
    return status, {"Content-Type": "text/xml"}, body


class FaultProxy:
    """``with FaultProxy(upstream_url, plan) as proxy:`` point clients at ``proxy.url``."""

    def __init__(self, upstream: str, plan: FaultPlan, host: str = "127.0.0.1"):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.plan = plan
        self._server = _QuietServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self.released = threading.Event()

    def release(self) -> None:
        """Answer the held requests (and hold no more)."""
        self.released.set()

    def wait_for(self, fault: str, timeout: float = 60.0) -> Injected:
        """The first logged request that got ``fault``, waiting for it up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [entry for entry in self.plan.log if entry.fault == fault]
            if found:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"no request got {fault!r} within {timeout} s; injected: {self.plan.log}")

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # the plan's log is the record
                pass

            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                match = SCOPE_RE.search(self.headers.get("Authorization", ""))
                service = match.group(1) if match else ""
                if service == "greengrass" and self.path.startswith("/greengrass/v2/"):
                    service = "greengrassv2"  # V1 and V2 share the signing name; only V2's paths start so
                fault = proxy.plan.draw(service, self.command, self.path)
                if fault is not None:
                    proxy.plan.log.append(Injected(service, self.command, self.path, fault))
                if fault == "hold":
                    proxy.released.wait(timeout=300)
                    return self._answer(*error_response(service, "error"))
                if fault in ("throttle", "error", "reject"):
                    return self._answer(*error_response(service, fault))
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    answer = response.read()
                    proxy.plan.forwarded += 1
                    if fault == "lost":
                        return self._answer(*error_response(service, fault))
                    skip = {"connection", "transfer-encoding", "content-length"}
                    kept = {k: v for k, v in response.getheaders() if k.lower() not in skip}
                    # A HEAD answer has no body; its Content-Length is the object's size (S3 HeadObject).
                    length = response.getheader("Content-Length") if self.command == "HEAD" else None
                    return self._answer(response.status, kept, answer, length)
                finally:
                    upstream.close()

            def _answer(self, status, headers, body, content_length=None):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", content_length or str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _relay

        return Handler

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.release()
        self._server.shutdown()
        self._server.server_close()
