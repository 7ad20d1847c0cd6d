"""The test bed's HTTPS data-plane endpoints: one mutual-TLS server for AWS IoT's HTTPS hosts.

Test equipment. The credential provider (``<prefix>.credentials.iot.<region>.amazonaws.com``) and the
Greengrass data plane (``greengrass-ats.iot.<region>.amazonaws.com``) are separate hosts on AWS; here both are
served on one loopback port and told apart by the TLS server name (SNI), which the client must send. Every
request is authenticated with the client certificate first (``registry.authenticate``: registered, ACTIVE,
in the region of the host); each route then applies its own authorization. Handlers answer
``(status, JSON body)``, or ``(status, bytes)`` for an artifact (``application/octet-stream``).
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from testbed.iot_data_plane.registry import LOG, IotRegistry

Route = tuple[re.Pattern, str, re.Pattern, Callable]  # host, method, path, handler(principal, match, headers, body)


class HttpsDataPlane:
    def __init__(self, host: str, port: int, registry: IotRegistry, routes: list[Route]):
        self.host, self.port, self.registry, self.routes = host, port, registry, routes
        hosts = "|".join("(?:%s)" % pattern.pattern.strip("^$") for pattern, _method, _path, _handler in routes)
        # One server name pattern for the TLS context; its group 1 (the region) comes from the matching host.
        self._any_host = re.compile("^(?:%s)$" % hosts)

    def _dispatch(self, request: BaseHTTPRequestHandler, method: str) -> tuple[int, dict | bytes]:
        server_name = getattr(request.connection, "edgeml_server_name", "")
        path = request.path.split("?", 1)[0]
        principal = self.registry.authenticate(request.connection)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        for host, route_method, route_path, handler in self.routes:
            match = route_path.match(path)
            if host.match(server_name) and method == route_method and match:
                if principal is None:
                    return 403, {"message": "Access Denied: the certificate is not registered and ACTIVE"}
                return handler(principal, match, request.headers, body)
        return 404, {"message": "No such resource: %s %s on %s" % (method, path, server_name)}

    def start(self) -> HttpsDataPlane:
        plane = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                status, body = plane._dispatch(self, method)
                binary = isinstance(body, bytes)
                data = body if binary else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if binary else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 - http.server's name
                self._answer("GET")

            def do_POST(self):  # noqa: N802 - http.server's name
                self._answer("POST")

            def log_message(self, format, *args):  # noqa: A002 - http.server's signature
                LOG.debug("https data plane: " + format, *args)

        context: ssl.SSLContext = self.registry.server_context(self._any_host)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, address = super().get_request()
                sock.settimeout(30)
                # The handshake runs on the first read, in the request's own thread: a slow client holds no one up.
                return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

            def handle_error(self, request, client_address):
                LOG.info("https data plane: connection from %s failed", client_address, exc_info=True)

        server = Server((self.host, self.port), Handler)
        threading.Thread(target=server.serve_forever, name="iot-https-data-plane", daemon=True).start()
        return self
