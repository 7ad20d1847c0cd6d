"""The stand-in V1 core's cloud side: follows Greengrass V1 deployments and routes the group's subscriptions.

TEST EQUIPMENT, never shipped as the product. Started by ``standin_core.py`` inside the daemon once config.json
has been validated. What it does, as a V1 core does (Greengrass V1 developer guide pages in brackets):

- connects to ``coreThing.iotHost`` with the core's certificate and key, the thing name as client ID
  [gg-core.md, config.json]; subscribes to its ``$aws/things/<thing>-gda/shadow/...`` topics and asks for the
  latest deployment [gg-sec.md: the minimal policy grants exactly these topics];
- for each new deployment: reports ``InProgress``, gets the group definition (``greengrass:GetDeployment``) and
  the artifacts (``greengrass:GetDeploymentArtifacts``) from ``coreThing.ggHost`` over mutual TLS, checks each
  Lambda package against the function's ``CodeSha256``, unpacks each S3 machine learning resource at its
  ``DestinationPath`` [ml-inference.md], restarts the functions and reports ``Success``, or ``Failure`` with the
  reason (``greengrass:UpdateCoreDeploymentStatus``);
- runs each Lambda in its own process as its ``RunAs`` identity (the group default, else ``ggc_user``) with the
  function's environment and the variables the core sets (``AWS_IOT_THING_NAME``, ``MY_FUNCTION_ARN``, ...)
  [lambda-group-config.md]; a pinned function starts at deployment and is restarted when it exits, an
  on-demand one starts on its first message [lambda-functions.md];
- serves the core's IPC to the functions' ``greengrasssdk`` (``lambda_runtime.py`` and the runtime modules
  beside it) and routes messages only as the group's subscriptions say [gg-sec.md "Subscriptions"]:
  ``cloud`` -> function on the subjects the core subscribes to on IoT Core, function -> ``cloud`` published with
  the core's connection (so its AWS IoT policy applies), function -> function; a message no subscription
  matches is dropped, as the core drops it.

The test bed's addresses come from ``/etc/edgeml-testbed/endpoints.json`` (as for the V2 stand-in, see
``testbed/standins/greengrass_v2_nucleus/README.md``); without it the core is offline and retries every 5 s.
Its ``lambda_runtimes`` ({"python3.8": "/path/to/python"}) tells which interpreter runs a function's runtime:
the bed's Debian 12 devices have no python3.8 (field notes), so the bed names the inference runtime's; without
an entry the interpreter is looked up on PATH as the core does, and a missing one fails the deployment.

Anything of a group this stand-in does not implement (other resource kinds, connectors, runtimes other than
python3.7/3.8, device definitions with devices) fails the deployment with a message naming it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import pwd
import queue
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

HERE = Path(__file__).resolve().parent
# lib/ beside this file: the bed's MQTT and HTTPS client and paho-mqtt (build.py ships them); run from the repository
# (the unit tests), the client's source folder.
sys.path.insert(0, str(HERE / "lib" if (HERE / "lib").is_dir() else HERE.parents[5] / "iot_data_plane"))

from client import DataPlaneClient, https_request, kill_process_group, load_device_endpoints  # noqa: E402
from paho.mqtt.client import topic_matches_sub as topic_matches  # noqa: E402 - MQTT filter matching, as subjects use

LOG = logging.getLogger("standin-core")
ENDPOINTS_FILE = os.environ.get("EDGEML_TESTBED_ENDPOINTS", "/etc/edgeml-testbed/endpoints.json")
RETRY_SECONDS = 5
ROUTER_ARN = "arn:aws:lambda:::function:GGRouter"
SHADOW_ARN = "arn:aws:lambda:::function:GGShadowService"
RUNTIMES = ("python3.7", "python3.8")
RUNTIME_DIR = HERE / "runtime" / "python"


class DeploymentFailed(Exception):
    pass


def routes(subscriptions: list, source: str, topic: str) -> list:
    """Targets of a message from ``source`` on ``topic``: one per subscription that matches, in order."""
    return [s["Target"] for s in subscriptions if s.get("Source") == source and topic_matches(s["Subject"], topic)]


def _default_run_as(document: dict) -> dict:
    """The group's default identity for its functions (FunctionDefinition DefaultConfig Execution RunAs), or {}."""
    return ((document.get("FunctionDefaultConfig") or {}).get("Execution") or {}).get("RunAs") or {}


def _readable(tree: Path) -> None:
    """Folders 0755 and files 0644, so that a function's identity can read what root unpacked."""
    for path in [tree, *tree.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


class Function:
    """One deployed Lambda function and its process."""

    def __init__(self, config: dict, code_dir: Path, interpreter: str, default_run_as: dict):
        self.arn = config["FunctionArn"]
        self.config = config.get("FunctionConfiguration") or {}
        self.handler, self.runtime = config.get("Handler"), config.get("Runtime")
        self.code_dir, self.interpreter = code_dir, interpreter
        run_as = ((self.config.get("Environment") or {}).get("Execution") or {}).get("RunAs") or default_run_as
        self.run_as = run_as or {}
        self.token = uuid.uuid4().hex
        self.work = queue.Queue()  # type: queue.Queue
        self.process = None  # type: subprocess.Popen | None
        self.stopping = False

    @property
    def pinned(self) -> bool:
        return bool(self.config.get("Pinned"))

    @property
    def name(self) -> str:
        return self.arn.split(":")[6]


class V1Core:
    def __init__(self, config: dict, ggc_root: Path):
        core = config["coreThing"]
        certs = ggc_root / "certs"
        self.thing_arn = core["thingArn"]
        self.thing = self.thing_arn.split(":thing/", 1)[1]
        self.region, self.account = self.thing_arn.split(":")[3], self.thing_arn.split(":")[4]
        self.iot_host, self.gg_host = core["iotHost"], core["ggHost"]
        self.certificate, self.private_key = str(certs / core["certPath"]), str(certs / core["keyPath"])
        self.root = ggc_root / "ggc"
        self.state_file = self.root / "deployment" / "group" / "deployment.json"
        self.endpoints = None  # type: dict | None
        self.mqtt = None
        self.functions = {}  # type: dict
        self.subscriptions = []  # type: list
        self.results = {}  # type: dict  # invocation id -> (payload, function error), for RequestResponse
        self.result_ready = threading.Condition()
        self.notices = queue.Queue()  # type: queue.Queue
        self.lock = threading.RLock()
        self.stopped = threading.Event()
        self.ipc_address = self.start_ipc()

    # --- connection ----------------------------------------------------------------------------------

    def load_endpoints(self):
        try:
            return load_device_endpoints(ENDPOINTS_FILE, str(self.root / "var" / "testbed-ca.pem"))
        except (OSError, ValueError) as error:
            LOG.info("offline: no test-bed endpoint map (%s)", error)
            return None

    def connect(self) -> bool:
        self.endpoints = self.load_endpoints()
        if not self.endpoints:
            return False
        client = DataPlaneClient(
            self.endpoints, self.iot_host, self.thing, self.certificate, self.private_key, self.endpoints["ca_file"], 15
        )
        outcome = client.connect()
        if not outcome.ok:
            LOG.warning("MQTT connection to %s refused: %s", self.iot_host, outcome.detail)
            return False
        shadow = "$aws/things/%s-gda/shadow/" % self.thing
        subscribed = client.subscribe_all([shadow + "update/delta", shadow + "get/accepted", shadow + "get/rejected"])
        if not subscribed.ok:
            LOG.warning("subscription refused: %s", subscribed.detail)
            client.close()
            return False
        self.mqtt = client
        self.subscribe_cloud_subjects()
        client.publish(shadow + "get", "{}")
        LOG.info("connected to %s as %s", self.iot_host, self.thing)
        return True

    def subscribe_cloud_subjects(self) -> None:
        client = self.mqtt
        with self.lock:
            subjects = sorted({s["Subject"] for s in self.subscriptions if s.get("Source") == "cloud"})
        for subject in subjects:
            if client is not None and not client.subscribe(subject).ok:
                LOG.warning("subscription to %s refused by AWS IoT: no cloud messages on it", subject)

    def receive(self) -> None:
        shadow = "$aws/things/%s-gda/shadow/" % self.thing
        while not self.stopped.is_set() and self.mqtt is not None and not self.mqtt.disconnected:
            message = self.mqtt.receive(timeout=0.5)
            if message is None:
                continue
            topic, payload = message
            if topic.startswith(shadow):
                self.notices.put((topic, payload))
            else:
                self.route("cloud", topic, payload)

    def serve(self) -> None:
        threading.Thread(target=self.follow_deployments, name="deployments", daemon=True).start()
        self.restore()
        while not self.stopped.is_set():
            try:
                connected = self.connect()
            except (OSError, ValueError, KeyError) as error:
                LOG.warning("connection failed: %s", error)
                connected = False
            if connected:
                self.receive()
                LOG.warning("disconnected from %s", self.iot_host)
                self.mqtt = None
            self.stopped.wait(RETRY_SECONDS)

    def shutdown(self) -> None:
        self.stopped.set()
        with self.lock:
            functions = list(self.functions.values())
        for function in functions:
            self.stop_function(function)
        if self.mqtt is not None:
            self.mqtt.close()

    # --- deployments ---------------------------------------------------------------------------------

    def follow_deployments(self) -> None:
        while not self.stopped.is_set():
            try:
                topic, payload = self.notices.get(timeout=1)
            except queue.Empty:
                continue
            try:
                state = json.loads(payload).get("state") or {}
            except ValueError:
                continue
            notice = (state.get("desired") or state).get("deployment")
            if topic.endswith("get/rejected") or not notice:
                continue
            if notice.get("deploymentId") == self.applied().get("DeploymentId"):
                continue
            self.deploy(notice)

    def applied(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def https(self, method: str, path: str, body: bytes | None = None) -> tuple:
        headers = {"Content-Type": "application/json"}
        return https_request(
            self.endpoints, self.gg_host, self.certificate, self.private_key, method, path, body, headers, timeout=60
        )

    def fetch(self, path: str, what: str) -> bytes:
        status, data = self.https("GET", path)
        if status != 200:
            raise DeploymentFailed("%s: HTTP %d %s" % (what, status, data[:300].decode(errors="replace")))
        return data

    def report(self, notice: dict, status: str, error: str = "") -> None:
        path = "/greengrass/groups/%s/deployments/%s/cores/%s" % (
            notice["groupId"],
            notice["deploymentId"],
            quote(self.thing_arn, safe=""),
        )
        body = {"Status": status}
        if error:
            body.update(
                ErrorMessage=error, ErrorDetails=[{"DetailedErrorCode": "GG-STANDIN", "DetailedErrorMessage": error}]
            )
        try:
            answer, data = self.https("POST", path, json.dumps(body).encode())
        except OSError as failure:
            LOG.warning("deployment %s: status %s not reported: %s", notice["deploymentId"], status, failure)
            return
        if answer != 200:
            LOG.warning(
                "deployment %s: status %s refused: HTTP %d %s", notice["deploymentId"], status, answer, data[:300]
            )

    def deploy(self, notice: dict) -> None:
        base = "/greengrass/groups/%s/deployments/%s" % (notice["groupId"], notice["deploymentId"])
        LOG.info("deployment %s of group %s: starting", notice["deploymentId"], notice["groupId"])
        self.report(notice, "InProgress")
        try:
            document = json.loads(self.fetch(base + "/definition", "GetDeployment"))
            functions = self.prepare(document, base)
        except (DeploymentFailed, OSError, ValueError, KeyError) as failure:
            LOG.error("deployment %s failed: %s", notice["deploymentId"], failure)
            self.report(notice, "Failure", str(failure))
            return
        self.activate(document, functions)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(document))
        self.report(notice, "Success")
        LOG.info("deployment %s: Success", notice["deploymentId"])

    def prepare(self, document: dict, base: str) -> list:
        """Download and unpack everything the deployment needs; nothing running changes yet."""
        if document.get("Connectors"):
            raise DeploymentFailed("not implemented by the stand-in core: connectors")
        for resource in document.get("Resources") or []:
            kinds = sorted((resource.get("ResourceDataContainer") or {}).keys())
            if kinds != ["S3MachineLearningModelResourceData"]:
                raise DeploymentFailed(
                    "not implemented by the stand-in core: resource %s (%s)" % (resource["Id"], kinds)
                )
            self.unpack_model(resource, base)
        return [
            self.unpack_function(config, base, _default_run_as(document)) for config in document.get("Functions") or []
        ]

    def unpack_model(self, resource: dict, base: str) -> None:
        model = resource["ResourceDataContainer"]["S3MachineLearningModelResourceData"]
        data = self.fetch(base + "/artifacts/resources/" + quote(resource["Id"], safe=""), "model " + model["S3Uri"])
        destination = Path(model["DestinationPath"])
        staging = destination.with_name(destination.name + ".standin-new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
                for member in archive.getmembers():
                    if (
                        member.name.startswith("/")
                        or ".." in Path(member.name).parts
                        or not (member.isfile() or member.isdir())
                    ):
                        raise DeploymentFailed("model %s: unsafe archive entry %s" % (model["S3Uri"], member.name))
                archive.extractall(staging)  # noqa: S202 - entries checked above
        except tarfile.TarError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise DeploymentFailed("model %s is not a tar archive: %s" % (model["S3Uri"], error)) from None
        _readable(staging)
        shutil.rmtree(destination, ignore_errors=True)
        staging.rename(destination)

    def unpack_function(self, config: dict, base: str, default_run_as: dict) -> Function:
        arn, runtime = config["FunctionArn"], config.get("Runtime")
        if runtime not in RUNTIMES:
            raise DeploymentFailed("not implemented by the stand-in core: runtime %s of %s" % (runtime, arn))
        interpreter = self.interpreter(runtime)
        if not interpreter:
            raise DeploymentFailed("%s runs on %s, which is not on this device's PATH" % (arn, runtime))
        data = self.fetch(base + "/artifacts/lambda/" + quote(arn, safe=""), "Lambda " + arn)
        if base64.b64encode(hashlib.sha256(data).digest()).decode() != config.get("CodeSha256"):
            raise DeploymentFailed("the package of %s does not match its CodeSha256" % arn)
        code_dir = self.code_dir(arn)
        shutil.rmtree(code_dir, ignore_errors=True)
        code_dir.mkdir(parents=True)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.extractall(code_dir)  # noqa: S202 - zipfile never writes outside code_dir
        except zipfile.BadZipFile:
            raise DeploymentFailed("the package of %s is not a zip file" % arn) from None
        _readable(code_dir)
        return Function(config, code_dir, interpreter, default_run_as)

    def interpreter(self, runtime: str | None) -> str | None:
        """The executable a function's runtime runs with: the bed's map, else the runtime's name on PATH."""
        return ((self.endpoints or {}).get("lambda_runtimes") or {}).get(runtime) or shutil.which(runtime or "")

    def code_dir(self, function_arn: str) -> Path:
        return self.root / "deployment" / "lambda" / function_arn.replace(":", "_")

    def activate(self, document: dict, functions: list) -> None:
        """The deployment's functions and subscriptions replace the running ones; its pinned functions start."""
        with self.lock:
            old = list(self.functions.values())
        for function in old:
            self.stop_function(function)
        with self.lock:
            self.functions = {f.arn: f for f in functions}
            self.subscriptions = document.get("Subscriptions") or []
        self.subscribe_cloud_subjects()
        for function in functions:
            if function.pinned:
                self.start_function(function)

    def restore(self) -> None:
        """After a restart: run the last deployment's functions again (their files are still here)."""
        document = self.applied()
        if not document:
            return
        self.endpoints = self.endpoints or self.load_endpoints() or {}
        functions = [
            Function(
                config,
                self.code_dir(config["FunctionArn"]),
                self.interpreter(config.get("Runtime")),
                _default_run_as(document),
            )
            for config in document.get("Functions") or []
        ]
        self.activate(document, [f for f in functions if f.interpreter and f.code_dir.is_dir()])

    # --- functions -----------------------------------------------------------------------------------

    def start_function(self, function: Function) -> None:
        if function.process is not None and function.process.poll() is None:
            return
        user = pwd.getpwnam("ggc_user") if "Uid" not in function.run_as else None
        uid = int(function.run_as.get("Uid", user.pw_uid if user else 0))
        gid = int(function.run_as.get("Gid", user.pw_gid if user else 0))
        variables = (function.config.get("Environment") or {}).get("Variables") or {}
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/",
            **{str(k): str(v) for k, v in variables.items()},
            "AWS_IOT_THING_NAME": self.thing,
            "AWS_IOT_THING_ARN": self.thing_arn,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "MY_FUNCTION_ARN": function.arn,
            "ROUTER_FUNCTION_ARN": ROUTER_ARN,
            "SHADOW_FUNCTION_ARN": SHADOW_ARN,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": function.token,
            "ENCODING_TYPE": str(function.config.get("EncodingType") or "json"),
            "PYTHONPATH": str(RUNTIME_DIR),
            "EDGEML_STANDIN_IPC_ADDRESS": "%s:%d" % self.ipc_address,
            "EDGEML_STANDIN_LAMBDA_CODE": str(function.code_dir),
            "EDGEML_STANDIN_LAMBDA_HANDLER": function.handler or "",
        }
        logs = self.root / "var" / "log" / "user" / self.region / self.account
        logs.mkdir(parents=True, exist_ok=True)

        def drop_privileges():
            os.setsid()
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

        function.stopping = False
        with open(logs / (function.name + ".log"), "ab") as log:
            function.process = subprocess.Popen(  # noqa: S603 - the function's own runtime
                [function.interpreter, str(RUNTIME_DIR / "lambda_runtime.py")],
                cwd=str(function.code_dir),
                env=env,
                stdout=log,
                stderr=log,
                preexec_fn=drop_privileges,  # noqa: PLW1509 - setuid needs it on 3.8
            )
        LOG.info("%s: started (pid %d, uid %d)", function.arn, function.process.pid, uid)
        threading.Thread(target=self.supervise, args=(function, function.process), daemon=True).start()

    def supervise(self, function: Function, process: subprocess.Popen) -> None:
        code = process.wait()
        if function.stopping or self.stopped.is_set():
            return
        LOG.warning("%s exited with %s", function.arn, code)
        if function.pinned:
            time.sleep(1)  # a pinned function is started again
            with self.lock:
                current = self.functions.get(function.arn) is function
            if current:
                self.start_function(function)

    def stop_function(self, function: Function) -> None:
        function.stopping = True
        process = function.process
        if process is None or process.poll() is not None:
            return
        kill_process_group(process, signal.SIGTERM)

    # --- routing and IPC -----------------------------------------------------------------------------

    def route(self, source: str, topic: str, payload: bytes) -> None:
        with self.lock:
            targets = routes(self.subscriptions, source, topic)
            functions = dict(self.functions)
        if not targets:
            LOG.info("dropped a message from %s on %s: no subscription matches", source, topic)
        for target in targets:
            if target == "cloud":
                client = self.mqtt
                if client is None or client.disconnected or not client.publish(topic, payload).ok:
                    LOG.warning("message from %s on %s not published: not connected or refused", source, topic)
            elif target in functions:
                function = functions[target]
                context = base64.b64encode(json.dumps({"custom": {"subject": topic, "source": source}}).encode())
                function.work.put((uuid.uuid4().hex, payload, context.decode(), "Event"))
                if function.process is None or function.process.poll() is not None:
                    self.start_function(function)  # an on-demand function starts on its first message
            else:
                LOG.warning("subscription target %s is not implemented by the stand-in core", target)

    def caller(self, headers):
        token = headers.get("Authorization") or ""
        with self.lock:
            return next((f for f in self.functions.values() if f.token == token), None)

    def start_ipc(self) -> tuple:
        core = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes = b"", headers=None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _target(self):
                prefix = "/2016-11-01/functions/"
                if not self.path.startswith(prefix):
                    return None, False
                rest = self.path[len(prefix) :]
                work = rest.endswith("/work")
                return unquote(rest[: -len("/work")] if work else rest), work

            def do_GET(self):  # noqa: N802 - http.server's name
                caller = core.caller(self.headers)
                arn, work = self._target()
                if caller is None or arn is None:
                    return self._send(403, b'{"message": "unknown authorization token"}')
                if work:  # GetWork: only a function's own work
                    if arn != caller.arn:
                        return self._send(403, b'{"message": "a function gets only its own work"}')
                    invocation, payload, context, _kind = caller.work.get()
                    return self._send(200, payload, {"X-Amz-InvocationId": invocation, "X-Amz-Client-Context": context})
                invocation = self.headers.get("X-Amz-InvocationId")
                with core.result_ready:
                    core.result_ready.wait_for(lambda: invocation in core.results, timeout=60)
                    payload, error = core.results.pop(invocation, (b'{"errorMessage": "timed out"}', "Unhandled"))
                self._send(200, payload, {"X-Amz-Function-Error": error} if error else {})

            def do_POST(self):  # noqa: N802 - http.server's name
                caller = core.caller(self.headers)
                arn, work = self._target()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if caller is None or arn is None:
                    return self._send(403, b'{"message": "unknown authorization token"}')
                if work:  # PostWorkResult / PostHandlerError
                    with core.result_ready:
                        error = self.headers.get("X-Amz-Function-Error") or ""
                        core.results[self.headers.get("X-Amz-InvocationId")] = (body, error)
                        core.result_ready.notify_all()
                    if len(core.results) > 1000:
                        core.results.clear()  # Event invocations' results nobody asks for
                    return self._send(200)
                invocation = uuid.uuid4().hex
                if arn == ROUTER_ARN:  # greengrasssdk's iot-data publish
                    try:
                        custom = json.loads(base64.b64decode(self.headers.get("X-Amz-Client-Context") or ""))["custom"]
                    except (ValueError, KeyError, TypeError):
                        return self._send(400, b'{"message": "client context without custom.subject"}')
                    if custom.get("source") != caller.arn:
                        return self._send(403, b'{"message": "a function publishes only as itself"}')
                    core.route(caller.arn, custom["subject"], body)
                    return self._send(202, b"", {"X-Amz-InvocationId": invocation})
                return self._send(
                    404, b'{"message": "not implemented by the stand-in core: invoking %s"}' % arn.encode()
                )

            def log_message(self, format, *args):  # noqa: A002 - http.server's signature
                LOG.debug("ipc: " + format, *args)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        # The bed's devices share the host's network, so each core listens on a port of its own, not 8000.
        server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, name="ipc", daemon=True).start()
        return server.server_address[:2]


def run(config_path: Path, ggc_root: Path, stopping: threading.Event) -> None:
    """The daemon's body: serve until ``stopping`` is set, then stop every function."""
    config = json.loads(config_path.read_text())
    core = V1Core(config, ggc_root)
    threading.Thread(target=core.serve, name="core", daemon=True).start()
    stopping.wait()
    core.shutdown()
