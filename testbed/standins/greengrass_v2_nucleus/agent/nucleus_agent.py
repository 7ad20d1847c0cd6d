"""The stand-in nucleus's cloud side: follows Greengrass V2 deployments like a nucleus (TEST EQUIPMENT).

Started by the stand-in ``Greengrass.jar`` once it has validated ``effectiveConfig.yaml``; it gets that
configuration as JSON on its standard input. Why Python and not more Java: the device already has python3
(Ansible needs it), the bed's MQTT client (``client.py``, paho-mqtt, shipped beside this file) and the IPC
stand-in (``greengrass_ipc_server.py``) are Python, and the JDK's standard library has no MQTT client.

What it does, as the nucleus does (Greengrass V2 developer guide pages in brackets; see the README):
connect to the data endpoint with the device's certificate and the thing name as client ID, publish fleet
status [telemetry.md], ask for and follow its deployment jobs [manage-deployments.md; IoT jobs-mqtt-api.md],
resolve component versions [ResolveComponentCandidates], get token-exchange credentials through the role
alias [device-service-role.md], download S3 artifacts with them and check their digests, unarchive ZIPs,
interpolate recipe variables, run Install/Run/Shutdown as the component user, serve IPC to the components
relayed over its own MQTT connection with the recipes' ``accessControl`` [ipc-iot-core-mqtt.md], report
IN_PROGRESS then SUCCEEDED or FAILED through the job, and roll back to the previous deployment when the
deployment says ROLLBACK.

The test bed's addresses: the device shares the host's network, but the bed's services listen on loopback
ports chosen at start and use the bed's CA, so ``/etc/edgeml-testbed/endpoints.json`` (written by the test or
the demo; ``EDGEML_TESTBED_ENDPOINTS`` overrides the path) stands in for DNS and the fixed ports:
``{"mqtt": {"host", "port"}, "https": {"host", "port"}, "s3": "http://127.0.0.1:<port>", "root_ca_pem"}``.
Without it the agent behaves like a nucleus without network: it keeps running and retries.
"""

from __future__ import annotations

import base64
import grp
import json
import logging
import os
import pwd
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from typing import Dict, List, Optional  # noqa: F401 - List in type comments

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import recipes  # noqa: E402 - beside this file on the device
from recipes import RecipeError, Unsupported  # noqa: E402

LOG = logging.getLogger("nucleus")
NUCLEUS = "aws.greengrass.Nucleus"
ENDPOINTS_FILE = os.environ.get("EDGEML_TESTBED_ENDPOINTS", "/etc/edgeml-testbed/endpoints.json")
RETRY_SECONDS = 5
# lifecycle-management: a component that errors three times is BROKEN (component-lifecycle, "BROKEN").
ERRORS_BEFORE_BROKEN = 3


class DeploymentFailed(Exception):
    def __init__(self, message: str, component: str = "", error_type: str = "COMPONENT_ERROR"):
        super().__init__(message)
        self.component = component
        self.error_type = error_type


class Component:
    """One deployed component version on this device and its processes."""

    def __init__(self, name: str, version: str, recipe: dict, configuration, manifest: dict, steps: dict):
        self.name, self.version, self.recipe = name, version, recipe
        self.configuration, self.manifest, self.steps = configuration, manifest, steps
        self.token = uuid.uuid4().hex
        self.process = None  # type: Optional[subprocess.Popen]
        self.state = "NEW"
        self.errors = 0
        self.stopping = False

    @property
    def access_control(self) -> dict:
        return (self.configuration or {}).get("accessControl") or {}


class Nucleus:
    def __init__(self, config: dict, root: str):
        self.config, self.root = config, root
        system = config["system"]
        nucleus = config["services"][NUCLEUS]["configuration"]
        self.thing = system["thingName"]
        self.region = nucleus["awsRegion"]
        self.data_host = nucleus["iotDataEndpoint"]
        self.credentials_host = nucleus["iotCredEndpoint"]
        self.role_alias = nucleus["iotRoleAlias"]
        self.certificate, self.private_key = system["certificateFilePath"], system["privateKeyPath"]
        user = ((nucleus.get("runWithDefault") or {}).get("posixUser") or "ggc_user:ggc_group").split(":")
        self.user, self.group = user[0], user[1] if len(user) > 1 else user[0]
        self.version = config["services"][NUCLEUS].get("version", "")
        self.platform = {"os": "linux", "architecture": _architecture()}
        self.components = {}  # type: Dict[str, Component]
        self.lock = threading.RLock()
        self.jobs = queue.Queue()  # type: queue.Queue
        self.mqtt = None
        self.endpoints = None  # type: Optional[dict]
        self.ipc = None
        self.stopped = threading.Event()
        self.state_file = os.path.join(root, "standin", "deployment.json")
        self.previous = None  # type: Optional[dict]  # the components before the deployment being applied

    # --- connection ----------------------------------------------------------------------------------

    def load_endpoints(self) -> Optional[dict]:
        from client import load_device_endpoints  # beside this file

        try:
            return load_device_endpoints(ENDPOINTS_FILE, os.path.join(self.root, "standin", "testbed-ca.pem"))
        except (OSError, ValueError) as error:
            LOG.info("offline: no test-bed endpoint map (%s)", error)
            return None

    def connect(self) -> bool:
        from client import DataPlaneClient  # paho-mqtt beside this file

        self.endpoints = self.load_endpoints()
        if not self.endpoints:
            return False
        client = DataPlaneClient(
            self.endpoints,
            self.data_host,
            self.thing,
            self.certificate,
            self.private_key,
            self.endpoints["ca_file"],
            timeout=15,
        )
        outcome = client.connect()
        if not outcome.ok:
            LOG.warning("MQTT connection to %s refused: %s", self.data_host, outcome.detail)
            return False
        jobs = "$aws/things/%s/jobs/" % self.thing
        topics = ["notify-next", "$next/get/accepted", "$next/get/rejected", "+/update/accepted", "+/update/rejected"]
        subscribed = client.subscribe_all([jobs + topic for topic in topics])
        if not subscribed.ok:
            LOG.warning("subscription refused: %s", subscribed.detail)
            client.close()
            return False
        self.mqtt = client
        with self.lock:
            filters = sorted(self.ipc.subscriptions) if self.ipc else []
        for topic_filter in filters:
            client.subscribe(topic_filter)
        LOG.info("connected to %s as %s", self.data_host, self.thing)
        return True

    def publish(self, topic: str, payload, qos: int = 1) -> bool:
        client = self.mqtt
        if client is None or client.disconnected:
            return False
        return client.publish(topic, payload, qos=qos).ok

    def publish_health(self, trigger: str) -> None:
        """Fleet status (telemetry.md: the nucleus's FleetStatusDetails)."""
        with self.lock:
            components = [
                {"componentName": c.name, "version": c.version, "state": c.state, "fleetConfigArns": []}
                for c in self.components.values()
            ]
        broken = any(c["state"] == "BROKEN" for c in components)
        health = {
            "ggcVersion": self.version,
            "platform": "linux",
            "architecture": self.platform["architecture"],
            "runtime": "aws_nucleus_classic",
            "thing": self.thing,
            "overallDeviceStatus": "UNHEALTHY" if broken else "HEALTHY",
            "sequenceNumber": int(time.time()),
            "timestamp": int(time.time() * 1000),
            "messageType": "COMPLETE",
            "trigger": trigger,
            "components": components,
        }
        self.publish("$aws/things/%s/greengrassv2/health/json" % self.thing, json.dumps(health))

    def route_messages(self) -> None:
        """MQTT messages: job notifications to the deployment loop, anything else to the IPC subscribers."""
        jobs = "$aws/things/%s/jobs/" % self.thing
        while not self.stopped.is_set():
            client = self.mqtt
            if client is None:
                time.sleep(0.2)
                continue
            message = client.receive(timeout=0.5)
            if message is None:
                continue
            topic, payload = message
            if topic.startswith(jobs):
                self.jobs.put((topic, payload))
            elif self.ipc is not None:
                self.ipc.inject(topic, payload)

    # --- IPC ------------------------------------------------------------------------------------------

    def start_ipc(self) -> None:
        import greengrass_ipc_server as ipc  # the bed's IPC stand-in, beside this file

        socket_path = os.path.join(self.root, "ipc.socket")
        self.ipc = ipc.GreengrassIpcStandIn(
            socket_path, uuid.uuid4().hex, authorize=self.authorize_ipc, relay=self.relay_ipc
        ).start()
        os.chmod(socket_path, 0o666)  # noqa: S103 - every component user connects; the SVCUID token authenticates

    def authorize_ipc(self, token: str, operation: str, topic: str):
        """(component name or None, refusal or None) for an IPC request made with a component's token."""
        with self.lock:
            component = next((c for c in self.components.values() if c.token == token), None)
        if component is None:
            return None, "unknown SVCUID"
        allowed, detail = recipes.ipc_allowed(component.access_control, operation, topic)
        return component.name, (None if allowed else "%s: %s" % (component.name, detail))

    def relay_ipc(self, kind: str, topic: str, qos: str, payload: bytes = b"") -> bool:
        client = self.mqtt
        if client is None or client.disconnected:
            return False
        if kind == "publish":
            return client.publish(topic, payload, qos=int(qos)).ok
        return client.subscribe(topic, int(qos)).ok

    # --- jobs -----------------------------------------------------------------------------------------

    def update_job(self, job_id: str, status: str, details: dict, expected_version=None) -> None:
        request = {"status": status, "statusDetails": details, "clientToken": uuid.uuid4().hex[:32]}
        if expected_version is not None:
            request["expectedVersion"] = expected_version
        topic = "$aws/things/%s/jobs/%s/update" % (self.thing, job_id)
        if not self.publish(topic, json.dumps(request)):
            LOG.warning("job %s: update %s not accepted by the broker", job_id, status)

    def follow_jobs(self) -> None:
        jobs = "$aws/things/%s/jobs/" % self.thing
        self.publish(jobs + "$next/get", json.dumps({"clientToken": uuid.uuid4().hex[:32]}))
        while not self.stopped.is_set():
            if self.mqtt is None or self.mqtt.disconnected:
                return
            try:
                topic, payload = self.jobs.get(timeout=1)
            except queue.Empty:
                continue
            try:
                message = json.loads(payload)
            except ValueError:
                continue
            if topic.endswith("/rejected"):
                LOG.warning("jobs service refused: %s %s", topic, message)
                continue
            execution = message.get("execution")
            if topic.endswith(("notify-next", "$next/get/accepted")) and execution:
                if execution.get("status") in ("QUEUED", "IN_PROGRESS"):
                    self.run_job(execution)
                    self.publish(jobs + "$next/get", json.dumps({"clientToken": uuid.uuid4().hex[:32]}))

    def run_job(self, execution: dict) -> None:
        job_id, document = execution["jobId"], execution.get("jobDocument") or {}
        version = execution.get("versionNumber")
        LOG.info("deployment %s (job %s): starting", document.get("deploymentId"), job_id)
        self.update_job(job_id, "IN_PROGRESS", {}, version)
        try:
            self.deploy(document)
        except DeploymentFailed as failure:
            LOG.error("deployment %s failed: %s", document.get("deploymentId"), failure)
            if document.get("failureHandlingPolicy", "ROLLBACK") == "ROLLBACK":
                rolled_back = "_ROLLBACK_COMPLETE" if self.roll_back() else "_ROLLBACK_NOT_REQUESTED"
            else:
                rolled_back = "_NO_STATE_CHANGE"
            details = {
                "detailed-deployment-status": "FAILED" + rolled_back,
                "deployment-failure-cause": str(failure),
                "deployment-error-stack": json.dumps(["DEPLOYMENT_FAILURE", failure.error_type]),
                "deployment-error-types": json.dumps([failure.error_type]),
            }
            self.update_job(job_id, "FAILED", details)
            self.publish_health("LOCAL_DEPLOYMENT")
            return
        self.update_job(job_id, "SUCCEEDED", {"detailed-deployment-status": "SUCCESSFUL"})
        self.publish_health("LOCAL_DEPLOYMENT")
        LOG.info("deployment %s SUCCEEDED", document.get("deploymentId"))

    # --- deployments ----------------------------------------------------------------------------------

    def https(self, host: str, method: str, path: str, body: Optional[bytes] = None, headers=None) -> tuple:
        from client import https_request  # beside this file

        return https_request(self.endpoints, host, self.certificate, self.private_key, method, path, body, headers)

    def resolve(self, components: dict) -> Dict[str, dict]:
        """ResolveComponentCandidates on the Greengrass data plane, with this device's platform."""
        request = {
            "platform": {"attributes": self.platform},
            "componentCandidates": [
                {
                    "componentName": name,
                    "componentVersion": spec.get("componentVersion"),
                    "versionRequirements": {"deployment": "=" + spec.get("componentVersion", "")},
                }
                for name, spec in sorted(components.items())
            ],
        }
        host = "greengrass-ats.iot.%s.amazonaws.com" % self.region
        path, body = "/greengrass/v2/resolveComponentCandidates", json.dumps(request).encode()
        status, data = self.https(host, "POST", path, body, {"Content-Type": "application/json"})
        if status != 200:
            answer = data[:500].decode(errors="replace")
            raise DeploymentFailed(
                "ResolveComponentCandidates: HTTP %d %s" % (status, answer), error_type="CLOUD_SERVICE_ERROR"
            )
        resolved = {}
        for version in json.loads(data)["resolvedComponentVersions"]:
            resolved[version["componentName"]] = json.loads(base64.b64decode(version["recipe"]))
        return resolved

    def credentials(self) -> dict:
        status, data = self.https(
            self.credentials_host,
            "GET",
            "/role-aliases/%s/credentials" % self.role_alias,
            headers={"x-amzn-iot-thingname": self.thing},
        )
        if status != 200:
            raise DeploymentFailed(
                "token exchange through role alias %s: HTTP %d %s"
                % (self.role_alias, status, data[:300].decode(errors="replace")),
                error_type="CLOUD_SERVICE_ERROR",
            )
        return json.loads(data)["credentials"]

    def download(self, uri: str, credentials: dict) -> bytes:
        url = recipes.s3_object_url(self.endpoints["s3"], uri)
        headers = recipes.sigv4_headers("GET", url, credentials, self.region)
        from urllib.error import HTTPError
        from urllib.request import Request, urlopen

        try:
            with urlopen(Request(url, headers=headers), timeout=120) as answer:  # noqa: S310 - the bed's S3
                return answer.read()
        except HTTPError as error:
            raise DeploymentFailed(
                "artifact %s: S3 GetObject HTTP %d %s" % (uri, error.code, error.read()[:300]), error_type="S3_ERROR"
            ) from None

    def component_user_ids(self) -> tuple:
        """(uid, gid) of runWithDefault.posixUser, the user and group components run as."""
        return pwd.getpwnam(self.user).pw_uid, grp.getgrnam(self.group).gr_gid

    def artifact_folders(self, name: str, version: str) -> tuple:
        """{artifacts:path} and {artifacts:decompressedPath} of a component version (component-recipe-reference.md)."""
        packages = os.path.join(self.root, "packages")
        return (
            os.path.join(packages, "artifacts", name, version),
            os.path.join(packages, "artifacts-unarchived", name, version),
        )

    def prepare(self, name: str, recipe: dict, configuration_update, credentials_cache: list) -> Component:
        """Check the recipe, download and unarchive its artifacts: nothing runs yet."""
        version = recipe["ComponentVersion"]
        recipes.check_recipe(recipe)
        manifest = recipes.select_manifest(recipe, self.platform)
        steps = recipes.lifecycle_of(manifest, name)
        default = ((recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration")) or {}
        configuration = recipes.merge_configuration(default, configuration_update)
        component = Component(name, version, recipe, configuration, manifest, steps)
        artifacts, unarchived = self.artifact_folders(name, version)
        uid, gid = self.component_user_ids()
        for artifact in manifest.get("Artifacts") or []:
            recipes.check_artifact(artifact, name)
            file_name = recipes.artifact_file_name(artifact["URI"])
            target = os.path.join(artifacts, file_name)
            content = None
            if os.path.isfile(target):
                with open(target, "rb") as stream:
                    content = stream.read()
                try:
                    recipes.verify_digest(artifact, content)
                except RecipeError:
                    content = None
            if content is None:
                if not credentials_cache:
                    credentials_cache.append(self.credentials())
                content = self.download(artifact["URI"], credentials_cache[0])
                recipes.verify_digest(artifact, content)
                os.makedirs(artifacts, exist_ok=True)
                with open(target + ".partial", "wb") as stream:
                    stream.write(content)
                os.replace(target + ".partial", target)
            mode = recipes.permission_mode(artifact)
            os.chown(target, uid, gid)
            os.chmod(target, mode)
            if artifact.get("Unarchive") == "ZIP":
                folder = os.path.join(unarchived, file_name.rsplit(".", 1)[0])
                shutil.rmtree(folder, ignore_errors=True)
                with zipfile.ZipFile(target) as archive:
                    archive.extractall(folder)
                for base, dirs, files in os.walk(folder):
                    for entry in dirs:
                        os.chown(os.path.join(base, entry), uid, gid)
                        os.chmod(os.path.join(base, entry), 0o755)  # noqa: S103 - folders of the artifact
                    for entry in files:
                        os.chown(os.path.join(base, entry), uid, gid)
                        os.chmod(os.path.join(base, entry), mode)
        for folder in (artifacts, unarchived):
            os.makedirs(folder, exist_ok=True)
        return component

    def paths(self, components: Dict[str, Component]) -> Dict[str, dict]:
        paths = {}
        for c in components.values():
            artifacts, unarchived = self.artifact_folders(c.name, c.version)
            paths[c.name] = {
                "artifacts:path": artifacts,
                "artifacts:decompressedPath": unarchived,
                "work:path": os.path.join(self.root, "work", c.name),
                "configuration": c.configuration,
            }
        return paths

    def interpolate(self, component: Component, text: str, paths: Dict[str, dict]) -> str:
        kernel = {"kernel:rootPath": self.root, "iot:thingName": self.thing}
        dependencies = set(component.recipe.get("ComponentDependencies") or {})
        return recipes.interpolate(text, component.name, paths, kernel, dependencies)

    def environment(self, component: Component, step: dict, paths: Dict[str, dict]) -> Dict[str, str]:
        """The nucleus's environment for component processes (component-environment-variables.md) plus the
        lifecycle's and the step's Setenv, interpolated."""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "AWS_IOT_THING_NAME": self.thing,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "GG_ROOT_CA_PATH": self.config["system"]["rootCaPath"],
            "SVCUID": component.token,
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": os.path.join(self.root, "ipc.socket"),
            "HOME": paths[component.name]["work:path"],
        }
        for source in (component.steps.get("Setenv") or {}, step.get("Setenv") or {}):
            for key, value in source.items():
                env[str(key)] = self.interpolate(component, str(value), paths)
        return env

    def spawn(self, component: Component, step_name: str, paths: Dict[str, dict]) -> subprocess.Popen:
        step = component.steps[step_name]
        script = self.interpolate(component, step["Script"], paths)
        env = self.environment(component, step, paths)
        work = paths[component.name]["work:path"]
        uid, gid = self.component_user_ids()
        os.makedirs(work, exist_ok=True)
        os.chown(work, uid, gid)
        os.chmod(work, 0o700)
        privileged = str(step.get("RequiresPrivilege", False)).lower() == "true"
        log = open(os.path.join(self.root, "logs", component.name + ".log"), "ab")  # noqa: SIM115 - the child's

        def drop_privileges():
            os.setsid()
            if not privileged:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

        LOG.info("%s %s: %s (%s)", component.name, step_name, script, "root" if privileged else self.user)
        try:
            return subprocess.Popen(
                ["/bin/sh", "-c", script], cwd=work, env=env, stdout=log, stderr=log, preexec_fn=drop_privileges
            )  # noqa: PLW1509 - setuid needs it on 3.8
        finally:
            log.close()

    def run_step(self, component: Component, step_name: str, paths: Dict[str, dict]) -> None:
        if step_name not in component.steps:
            return
        process = self.spawn(component, step_name, paths)
        try:
            code = process.wait(timeout=component.steps[step_name]["Timeout"])
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise DeploymentFailed(
                "%s %s timed out after %s s" % (component.name, step_name, component.steps[step_name]["Timeout"]),
                component.name,
            ) from None
        if code != 0:
            raise DeploymentFailed(
                "%s %s exited with %d (log: %s)"
                % (component.name, step_name, code, _tail(os.path.join(self.root, "logs", component.name + ".log"))),
                component.name,
            )

    def install(self, component: Component, paths: Dict[str, dict]) -> None:
        """Install, retried up to three errors as the nucleus does before BROKEN (lifecycle states)."""
        for attempt in range(1, ERRORS_BEFORE_BROKEN + 1):
            try:
                self.run_step(component, "Install", paths)
                component.state = "INSTALLED"
                return
            except DeploymentFailed as failure:
                component.errors = attempt
                LOG.warning("%s: install error %d: %s", component.name, attempt, failure)
                if attempt == ERRORS_BEFORE_BROKEN:
                    component.state = "BROKEN"
                    raise DeploymentFailed("%s is BROKEN: %s" % (component.name, failure), component.name) from None

    def start(self, component: Component, paths: Dict[str, dict]) -> None:
        if "Run" not in component.steps:
            component.state = "FINISHED"
            return
        component.process = self.spawn(component, "Run", paths)
        component.state = "RUNNING"
        threading.Thread(target=self.supervise, args=(component, paths), daemon=True).start()

    def supervise(self, component: Component, paths: Dict[str, dict]) -> None:
        """A Run process that exits non-zero is ERRORED and restarted; three errors make it BROKEN."""
        while True:
            process = component.process
            code = process.wait()
            if component.stopping or self.stopped.is_set():
                return
            if code == 0:
                component.state = "FINISHED"
                return
            component.errors += 1
            LOG.warning("%s: run exited with %d (error %d)", component.name, code, component.errors)
            if component.errors >= ERRORS_BEFORE_BROKEN:
                component.state = "BROKEN"
                self.publish_health("COMPONENT_STATUS_CHANGE")
                return
            component.state = "ERRORED"
            time.sleep(1)
            if component.stopping:
                return
            component.process = self.spawn(component, "Run", paths)
            component.state = "RUNNING"

    def stop(self, component: Component, paths: Dict[str, dict]) -> None:
        component.stopping = True
        if component.process is not None and component.process.poll() is None:
            _kill_group(component.process, signal.SIGTERM, 10)
        try:
            self.run_step(component, "Shutdown", paths)
        except DeploymentFailed as failure:
            LOG.warning("%s: %s", component.name, failure)
        component.state = "FINISHED"

    def apply(self, wanted: Dict[str, Component]) -> None:
        """Stop what leaves or changes, then install and start the new versions in dependency order."""
        with self.lock:
            current = dict(self.components)
        old_paths = self.paths(current)
        for name, component in current.items():
            if wanted.get(name) is not component:
                self.stop(component, old_paths)
        with self.lock:
            self.components = dict(wanted)
        paths = self.paths(wanted)
        for name in recipes.dependency_order({n: c.recipe for n, c in wanted.items()}):
            component = wanted[name]
            if current.get(name) is not component:
                self.install(component, paths)
                self.start(component, paths)

    def deploy(self, document: dict) -> None:
        components = document.get("components") or {}
        try:
            resolved = self.resolve(components) if components else {}
            recipes.check_dependencies(resolved)
            credentials = []  # type: List[dict]
            wanted = {}
            with self.lock:
                current = dict(self.components)
            for name in sorted(resolved):
                recipe = resolved[name]
                update = (components.get(name) or {}).get("configurationUpdate")
                if current.get(name) and current[name].version == recipe["ComponentVersion"] and not update:
                    wanted[name] = current[name]
                    continue
                wanted[name] = self.prepare(name, recipe, update, credentials)
        except (RecipeError, Unsupported, KeyError, ValueError) as error:
            kind = "UNSUPPORTED" if isinstance(error, Unsupported) else "RECIPE_ERROR"
            raise DeploymentFailed(
                "%s: %s"
                % ("not implemented by the stand-in nucleus" if kind == "UNSUPPORTED" else "invalid recipe", error),
                error_type=kind,
            ) from None
        except OSError as error:
            raise DeploymentFailed("preparing the components: %s" % error, error_type="IO_ERROR") from None
        self.previous = {"components": {c.name: {"componentVersion": c.version} for c in current.values()}}
        try:
            self.apply(wanted)
        except (RecipeError, Unsupported) as error:
            raise DeploymentFailed(str(error), error_type="RECIPE_ERROR") from None
        self.save(document)

    def roll_back(self) -> bool:
        """Back to the previous deployment's components (deployment's failureHandlingPolicy ROLLBACK)."""
        previous = self.previous
        if previous is None:
            return False
        LOG.info("rolling back to %s", previous["components"])
        try:
            self.deploy(previous)
        except DeploymentFailed as failure:
            LOG.error("rollback failed: %s", failure)
            return False
        return True

    def save(self, document: dict) -> None:
        os.makedirs(os.path.dirname(self.state_file), exist_ok=True)
        with open(self.state_file + ".partial", "w", encoding="utf-8") as stream:
            json.dump({"components": document.get("components") or {}}, stream)
        os.replace(self.state_file + ".partial", self.state_file)

    def restore(self) -> None:
        """After a restart the nucleus runs the components of its last deployment again."""
        try:
            with open(self.state_file, encoding="utf-8") as stream:
                document = json.load(stream)
        except (OSError, ValueError):
            return
        if document.get("components"):
            try:
                self.deploy(document)
            except DeploymentFailed as failure:
                LOG.error("restarting the last deployment's components failed: %s", failure)

    # --- main loop ------------------------------------------------------------------------------------

    def serve(self) -> None:
        os.makedirs(os.path.join(self.root, "logs"), exist_ok=True)
        self.start_ipc()
        threading.Thread(target=self.route_messages, name="mqtt-router", daemon=True).start()
        restored = False
        while not self.stopped.is_set():
            if not self.connect():
                self.stopped.wait(RETRY_SECONDS)
                continue
            if not restored:
                self.restore()
                restored = True
            self.publish_health("NUCLEUS_LAUNCH")
            self.follow_jobs()
            LOG.warning("MQTT connection lost; reconnecting")
            self.mqtt = None

    def shutdown(self, *_args) -> None:
        self.stopped.set()
        with self.lock:
            components = dict(self.components)
        paths = self.paths(components)
        for name in reversed(recipes.dependency_order({n: c.recipe for n, c in components.items()})):
            self.stop(components[name], paths)
        if self.ipc is not None:
            self.ipc.stop()
        sys.exit(0)


def _architecture() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "aarch64", "armv7l": "arm"}.get(machine, machine)


def _kill_group(process: subprocess.Popen, sig=signal.SIGKILL, wait: float = 5) -> None:
    from client import kill_process_group  # beside this file

    kill_process_group(process, sig, wait)


def _tail(path: str, size: int = 600) -> str:
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            stream.seek(max(0, stream.tell() - size))
            return stream.read().decode(errors="replace").strip().replace("\n", " | ")
    except OSError:
        return "(no log)"


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else "/greengrass/v2"
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s [%(levelname)s] standin-nucleus-agent: %(message)s",
        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(os.path.join(root, "logs", "greengrass.log"))],
    )
    config = json.load(sys.stdin)
    nucleus = Nucleus(config, root)
    signal.signal(signal.SIGTERM, nucleus.shutdown)
    nucleus.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
