"""The Greengrass V2 detector's entry point and AWS's real IPC client, against the Greengrass IPC stand-in.

``roles/greengrass_v2_detector/files/greengrass_v2_detector.py`` talks to the nucleus with ``awsiotsdk``'s
``GreengrassCoreIPCClientV2`` (event stream RPC over a Unix socket). AWS's nucleus cannot run here, so the
nucleus's side is ``testbed/standins/greengrass_ipc`` (test equipment); the client is the real ``awsiotsdk`` /
``awscrt`` at the detector role's pins, installed from the cached wheelhouse into a folder of its own (never into
the project's virtualenv).

On the controller: the client connects (and is refused with a wrong SVCUID), publishes, subscribes and receives
injected messages; the entry point, run with the component's environment, the real small SSD model and this
machine's MXNet, answers an injected event with the expected detections, and exits non-zero before subscribing
when the model does not load. On a simulated device: ``playbooks/provision_greengrass_v2.yml``'s runtime
step (tag ``runtime``) installs the inference runtime with awsiotsdk from the wheelhouse, then the entry point runs
in that virtualenv against the stand-in run by the device's own ``python3``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from testbed.standins.greengrass_ipc.server import GreengrassIpcStandIn
from testbed.standins.greengrass_v2_nucleus.agent import recipes
from tests.e2e.fleet import LOCAL_TESTBED_INVENTORY
from tests.inference import small_ssd
from tests.roles import wheelhouse
from tests.roles.playbook_json import run_module_process, run_playbook

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLE_DIR = REPO_ROOT / "roles" / "greengrass_v2_detector"
ENTRY_POINT = ROLE_DIR / "files" / "greengrass_v2_detector.py"
INFERENCE_CODE = REPO_ROOT / "files" / "inference_lambda"
STANDIN = REPO_ROOT / "testbed" / "standins" / "greengrass_ipc" / "server.py"
V2_PLAYBOOK = REPO_ROOT / "playbooks" / "provision_greengrass_v2.yml"

SVCUID = "test-svcuid-3f9c2a"
INPUT_TOPIC = "itest/infer/input"
OUTPUT_TOPIC = "itest/infer/output"
BLUE, YELLOW = (0, 0, 255), (255, 255, 0)
SCENE = {(1, 2): BLUE, (2, 0): YELLOW}
EXPECTED = {"blue_box": small_ssd.cell_box(1, 2), "yellow_box": small_ssd.cell_box(2, 0)}

CLIENT_SCRIPT = """
import json, sys, threading
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import QOS

ipc = GreengrassCoreIPCClientV2()
print(json.dumps({"connected": True}), flush=True)
received = []
done = threading.Event()

def on_event(event):
    received.append({"topic": event.message.topic_name, "payload": event.message.payload.decode()})
    if len(received) == 2:
        done.set()

ipc.subscribe_to_iot_core(topic_name="itest/in/+", qos=QOS.AT_LEAST_ONCE, on_stream_event=on_event)
print(json.dumps({"subscribed": True}), flush=True)
if not done.wait(30):
    sys.exit("no messages arrived")
for message in received:
    ipc.publish_to_iot_core(topic_name="itest/echo", qos=QOS.AT_MOST_ONCE, payload=message["payload"].upper())
try:
    ipc.get_thing_shadow(thing_name="core")
except Exception as error:
    print(json.dumps({"refused": type(error).__name__, "message": getattr(error, "message", "")}), flush=True)
print(json.dumps({"received": received}), flush=True)
ipc.close()
"""


def pins_of_the_role() -> list[str]:
    return yaml.safe_load((ROLE_DIR / "defaults" / "main.yml").read_text())[
        "greengrass_v2_detector_runtime_pip_packages"
    ]


def test_wheelhouse_pins_match_the_role():
    specs = yaml.safe_load((ROLE_DIR / "meta" / "argument_specs.yml").read_text())
    option = specs["argument_specs"]["main"]["options"]["greengrass_v2_detector_runtime_pip_packages"]
    assert tuple(pins_of_the_role()) == wheelhouse.GREENGRASS_V2_REQUIREMENTS == tuple(option["default"])


def test_v2_playbook_adds_the_pins_to_the_inventorys_extras(tmp_path):
    """The playbook's own expression, evaluated with the detector role's defaults in the play as there."""
    play = yaml.safe_load(V2_PLAYBOOK.read_text())[0]
    # A play var (the play's input checks and the runtime role both read it).
    extras = {"inference_runtime_extra_pip_packages": play["vars"]["inference_runtime_extra_pip_packages"]}
    probe_role = tmp_path / "roles" / "probe"
    (probe_role / "tasks").mkdir(parents=True)
    (probe_role / "tasks" / "main.yml").write_text(
        "- name: Report\n  ansible.builtin.debug:\n    var: inference_runtime_extra_pip_packages\n"
    )
    probe = [
        {
            "name": "Probe",
            "hosts": "all",
            "gather_facts": False,
            "roles": [
                {"role": str(probe_role), "vars": extras},
                {"role": "edgeml.greengrass.greengrass_v2_detector", "tags": ["never"]},
            ],
        }
    ]
    (tmp_path / "probe.yml").write_text(yaml.safe_dump(probe))
    inventory = tmp_path / "inventory.yml"
    hosts = {"with-extras": {"inference_runtime_extra_pip_packages": ["tflite-runtime==2.14.0"]}, "plain": {}}
    inventory.write_text(
        yaml.safe_dump({"all": {"hosts": {h: {"ansible_connection": "local", **v} for h, v in hosts.items()}}})
    )
    run = run_playbook(tmp_path / "probe.yml", inventory)
    assert run.returncode == 0, run.describe()
    packages = {host: result["inference_runtime_extra_pip_packages"] for host, result in run.results("Report").items()}
    assert packages == {"with-extras": ["tflite-runtime==2.14.0", *pins_of_the_role()], "plain": pins_of_the_role()}

    v1_play = yaml.safe_load((REPO_ROOT / "playbooks" / "provision_greengrass_v1.yml").read_text())[0]
    v1_runtime = next(r for r in v1_play["roles"] if r["role"] == "edgeml.greengrass.inference_runtime")
    assert "inference_runtime_extra_pip_packages" not in v1_runtime.get("vars", {})
    assert "inference_runtime_extra_pip_packages" not in v1_play.get("vars", {})


# --- The real client on the controller --------------------------------------------------------------------


@pytest.fixture(scope="session")
def ipc_client_dir() -> Path:
    """awsiotsdk + awscrt at the role's pins for this controller's Python, installed into a cached folder."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheel_platform = f"manylinux2014_{platform.machine()}"
    wheels = wheelhouse.ensure_wheelhouse(python, wheel_platform, wheelhouse.GREENGRASS_V2_REQUIREMENTS)
    target = wheelhouse.cache_root() / "ipc-client" / wheels.name

    def install(partial: Path) -> None:
        argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels)]
        argv += ["--target", str(partial), *wheelhouse.GREENGRASS_V2_REQUIREMENTS]
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
        subprocess.run(argv, check=True, capture_output=True, env=env)

    return wheelhouse.build_once(target, wheelhouse.GREENGRASS_V2_REQUIREMENTS, install)


@pytest.fixture
def stand_in(tmp_path):
    # A short path: Unix socket paths are limited to 107 bytes.
    with GreengrassIpcStandIn(str(tmp_path / "ipc.socket"), SVCUID) as server:
        yield server


def component_environment(server: GreengrassIpcStandIn, python_path: list[Path], svcuid: str = SVCUID) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    environment.update(
        AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT=server.socket_path,
        SVCUID=svcuid,
        PYTHONPATH=os.pathsep.join(str(p) for p in python_path),
    )
    return environment


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_real_client_connects_publishes_and_receives_subscribed_messages(ipc_client_dir, stand_in, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    environment = component_environment(stand_in, [ipc_client_dir])
    client = subprocess.Popen(
        [sys.executable, str(script)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert stand_in.wait_subscribed("itest/in/a", 30), stand_in.state()
        assert stand_in.inject("itest/in/a", b"first") == 1
        assert stand_in.inject("other/topic", b"not subscribed") == 0
        assert stand_in.inject("itest/in/b", b"second") == 1
        stdout, stderr = client.communicate(timeout=60)
    finally:
        client.kill()
    assert client.returncode == 0, stderr
    lines = json_lines(stdout)
    assert {"connected": True} in lines
    assert {
        "received": [{"topic": "itest/in/a", "payload": "first"}, {"topic": "itest/in/b", "payload": "second"}]
    } in lines
    assert [(r["topic"], r["qos"], r["payload"]) for r in stand_in.published] == [
        ("itest/echo", "0", b"FIRST"),
        ("itest/echo", "0", b"SECOND"),
    ]
    # What the stand-in does not implement reaches the client as an error naming it, and is on record.
    refusal = next(line for line in lines if "refused" in line)
    assert refusal["refused"] == "ServiceError"
    assert "aws.greengrass#GetThingShadow' is not implemented" in refusal["message"]
    assert any("GetThingShadow" in reason for reason in stand_in.refused)
    assert stand_in.history[:2] == ["CONNECT", "SubscribeToIoTCore itest/in/+"]


def test_wrong_svcuid_is_refused(ipc_client_dir, stand_in, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    environment = component_environment(stand_in, [ipc_client_dir], svcuid="not-the-token")
    result = subprocess.run([sys.executable, str(script)], env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "AccessDeniedError" in result.stderr, result.stderr
    assert stand_in.history == [] and stand_in.published == []
    assert stand_in.refused == ["connection 1: CONNECT refused: authToken does not match SVCUID"]
    assert "not-the-token" not in " ".join(stand_in.refused)


ACCESS_CONTROL_SCRIPT = """
import json
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import QOS
ipc = GreengrassCoreIPCClientV2()
outcomes = {}
for name, call in (
    ("publish allowed", lambda: ipc.publish_to_iot_core(topic_name="itest/infer/output", qos=QOS.AT_LEAST_ONCE,
                                                         payload=b"ok")),
    ("publish outside", lambda: ipc.publish_to_iot_core(topic_name="itest/other", qos=QOS.AT_LEAST_ONCE,
                                                         payload=b"no")),
    ("subscribe allowed", lambda: ipc.subscribe_to_iot_core(topic_name="itest/infer/input", qos=QOS.AT_LEAST_ONCE,
                                                             on_stream_event=print)),
    ("subscribe outside", lambda: ipc.subscribe_to_iot_core(topic_name="itest/#", qos=QOS.AT_LEAST_ONCE,
                                                             on_stream_event=print)),
):
    try:
        call()
        outcomes[name] = "ok"
    except Exception as error:
        outcomes[name] = type(error).__name__ + ": " + str(getattr(error, "message", ""))
print(json.dumps(outcomes), flush=True)
ipc.close()
"""


def test_ipc_outside_the_recipes_access_control_is_refused_and_never_relayed(ipc_client_dir, tmp_path):
    """The stand-in nucleus's IPC (the agent's authorize and relay): the detector recipe's accessControl shape,
    the real client; an operation outside it gets UnauthorizedError and never reaches IoT Core."""
    access_control = {
        "aws.greengrass.ipc.mqttproxy": {
            "com.edgeml.ObjectDetector:mqttproxy:1": {
                "operations": ["aws.greengrass#SubscribeToIoTCore", "aws.greengrass#PublishToIoTCore"],
                "resources": [INPUT_TOPIC, OUTPUT_TOPIC],
            }
        }
    }
    tokens = {SVCUID: ("com.edgeml.ObjectDetector", access_control)}
    relayed = []

    def authorize(token, operation, topic):
        if token not in tokens:
            return None, "unknown SVCUID"
        component, policy = tokens[token]
        allowed, detail = recipes.ipc_allowed(policy, operation, topic)
        return component, None if allowed else detail

    def relay(kind, topic, qos, payload=b""):
        relayed.append((kind, topic, qos, payload))
        return True

    script = tmp_path / "client.py"
    script.write_text(ACCESS_CONTROL_SCRIPT)
    with GreengrassIpcStandIn(str(tmp_path / "ipc.socket"), "unused", authorize=authorize, relay=relay) as server:
        environment = component_environment(server, [ipc_client_dir])
        result = subprocess.run(
            [sys.executable, str(script)], env=environment, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stdout + result.stderr
    [outcomes] = json_lines(result.stdout)
    assert outcomes["publish allowed"] == outcomes["subscribe allowed"] == "ok", outcomes
    for name, topic in (("publish outside", "itest/other"), ("subscribe outside", "itest/#")):
        assert outcomes[name].startswith("UnauthorizedError: "), outcomes
        assert topic in outcomes[name], outcomes
    assert relayed == [("publish", OUTPUT_TOPIC, "1", b"ok"), ("subscribe", INPUT_TOPIC, "1", b"")]
    assert [r["topic"] for r in server.published] == [OUTPUT_TOPIC]


# --- The entry point on the controller (this machine's MXNet, the real small SSD) --------------------------


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    return small_ssd.export_small_ssd(tmp_path_factory.mktemp("small-ssd"))


def detector_environment(model_prefix: str | Path) -> dict:
    """The detector component's Setenv (roles/greengrass_v2_detector/vars/main.yml), with test topics."""
    return {
        "MODEL_PATH": str(model_prefix),
        "SCORE_THRESHOLD": "0.5",
        "MAX_DETECTIONS": "100",
        "DETECTOR_CONTEXT": "cpu",
        "INPUT_TOPIC": INPUT_TOPIC,
        "OUTPUT_TOPIC": OUTPUT_TOPIC,
        "CLASS_LABELS": ",".join(small_ssd.CLASS_LABELS),
        "COMPONENT_ARTIFACTS_PATH": "/greengrass/v2/packages/artifacts/com.edgeml.ObjectDetector/1.0.7",
    }


def assert_expected_detections(payload: dict, image_path: str) -> None:
    assert payload["image_path"] == image_path, payload
    found = {d["label"]: tuple(d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")) for d in payload["detections"]}
    assert sorted(found) == sorted(EXPECTED), payload
    for label, box in EXPECTED.items():
        assert found[label] == pytest.approx(box, abs=1e-3), (label, payload)


def test_entry_point_answers_an_injected_event_with_detections(ipc_client_dir, stand_in, small_model, tmp_path):
    image = str(small_ssd.write_synthetic_image(tmp_path / "scene.png", 640, 480, SCENE))
    environment = component_environment(stand_in, [ipc_client_dir, INFERENCE_CODE])
    environment.update(detector_environment(small_model))
    log = (tmp_path / "component.log").open("w")
    component = subprocess.Popen([sys.executable, "-u", str(ENTRY_POINT)], env=environment, stdout=log, stderr=log)
    try:
        assert stand_in.wait_subscribed(INPUT_TOPIC, 60), (tmp_path / "component.log").read_text()
        assert stand_in.inject(INPUT_TOPIC, b"not json") == 1
        assert stand_in.wait_published(1, 60), (tmp_path / "component.log").read_text()
        assert stand_in.inject(INPUT_TOPIC, json.dumps({"image_path": image}).encode()) == 1
        assert stand_in.wait_published(2, 60), (tmp_path / "component.log").read_text()
        assert component.poll() is None, "the component must keep running after an event"
        # The nucleus going away ends the subscription: the component exits non-zero (to be restarted).
        stand_in.stop()
        assert component.wait(30) == 1
    finally:
        component.kill()
        component.wait(10)
        log.close()
    assert "the subscription to itest/infer/input was closed by the nucleus" in (tmp_path / "component.log").read_text()
    rejected, detected = stand_in.published
    assert [(r["topic"], r["qos"]) for r in stand_in.published] == [(OUTPUT_TOPIC, "1")] * 2
    assert (
        json.loads(rejected["payload"])["error"]
        == "event must be a JSON object with 'image_path'; got text that is not JSON"
    )
    assert_expected_detections(json.loads(detected["payload"]), image)
    # Each answer says which component version made it (from {artifacts:path}).
    assert json.loads(detected["payload"])["component"] == {"name": "com.edgeml.ObjectDetector", "version": "1.0.7"}
    assert (
        stand_in.history == ["CONNECT", f"SubscribeToIoTCore {INPUT_TOPIC}"] + [f"PublishToIoTCore {OUTPUT_TOPIC}"] * 2
    )
    assert stand_in.refused == []


def test_entry_point_exits_before_subscribing_when_the_model_does_not_load(ipc_client_dir, stand_in, tmp_path):
    environment = component_environment(stand_in, [ipc_client_dir, INFERENCE_CODE])
    environment.update(detector_environment(tmp_path / "missing" / "deploy_model_algo_1"))
    result = subprocess.run(
        [sys.executable, "-u", str(ENTRY_POINT)], env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "deploy_model_algo_1" in result.stdout + result.stderr
    assert stand_in.history == ["CONNECT"]  # connected, never subscribed


def test_check_model_mode_says_whether_the_model_loads_without_the_nucleus(small_model, tmp_path):
    """The Install step's check: no IPC, no nucleus; exit 0 only for a model that loads."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "SVCUID"))}
    environment["PYTHONPATH"] = str(INFERENCE_CODE)
    runs = {}
    for name, model in (("loads", small_model), ("missing", tmp_path / "missing" / "deploy_model_algo_1")):
        environment.update(detector_environment(model))
        runs[name] = subprocess.run(
            [sys.executable, "-u", str(ENTRY_POINT), "--check-model"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert runs["loads"].returncode == 0, runs["loads"].stdout + runs["loads"].stderr
    assert "the model loads" in runs["loads"].stdout + runs["loads"].stderr
    assert runs["missing"].returncode == 1
    assert "the model does not load" in runs["missing"].stdout + runs["missing"].stderr


# --- On a simulated device ---------------------------------------------------------------------------------

DEVICE_DIR = "/opt/edgeml-itest"
DEVICE_RUN = "/run/edgeml-itest"

FILES_PLAYBOOK = """
- name: The component's files and the stand-in
  hosts: edge_devices
  gather_facts: false
  tasks:
    - name: Folders of the component and the stand-in
      ansible.builtin.file:
        path: "{{ item }}"
        state: directory
        mode: "0755"
      loop: ["%(dir)s/code", "%(dir)s/model", "%(dir)s/standin"]
    - name: The entry point, the inference code, the model, the scene and the stand-in
      ansible.builtin.copy:
        src: "{{ item.src }}"
        dest: "{{ item.dest }}"
        mode: "0644"
      loop: "{{ files }}"
"""


@pytest.mark.devices
@pytest.mark.slow
def test_entry_point_on_a_device_with_the_runtime_and_the_stand_in(edge_devices, small_model, tmp_path):
    fleet = edge_devices(count=1)
    host = next(iter(fleet.hosts))
    image = small_ssd.write_synthetic_image(tmp_path / "scene.png", 640, 480, SCENE)
    model_name = Path(small_model).name
    files = [{"src": str(ENTRY_POINT), "dest": f"{DEVICE_DIR}/greengrass_v2_detector.py"}]
    files += [{"src": str(path), "dest": f"{DEVICE_DIR}/code/{path.name}"} for path in INFERENCE_CODE.glob("*.py")]
    # The V2 default backend, ONNX Runtime: the model converted on the controller as the detector role does it.
    converted = run_module_process(
        "ssd_model_onnx",
        {"src": str(Path(small_model).parent), "prefix": model_name, "dest": str(tmp_path / f"{model_name}.onnx")},
        tmp_path / "convert-args.json",
    )
    assert converted.get("changed") is True, converted
    files += [{"src": converted["dest"], "dest": f"{DEVICE_DIR}/model/{model_name}.onnx"}]
    files += [
        {"src": str(image), "dest": f"{DEVICE_DIR}/scene.png"},
        {"src": str(STANDIN), "dest": f"{DEVICE_DIR}/standin/server.py"},
    ]
    # The runtime as the V2 playbook installs it: its "runtime" tag on a host that site.yml would group greengrass_v2.
    groups = tmp_path / "groups.yml"
    groups.write_text(yaml.safe_dump({"greengrass_v2": {"children": {"edge_devices": {}}}}))
    # The play checks every role's inputs first, whatever the tags: the other roles' inputs must pass their checks
    # (local_testbed's group vars and these small stand-ins, looked at by name, checksum and content only).
    nucleus_archive = tmp_path / "nucleus-standin.zip"
    nucleus_archive.write_bytes(b"checked by name and sha256 only: this run installs the runtime alone")
    model_archive = tmp_path / "model.tar.gz"
    with tarfile.open(model_archive, "w:gz") as archive:
        archive.add(f"{small_model}-symbol.json", arcname=f"{model_name}-symbol.json")
        archive.add(f"{small_model}-0000.params", arcname=f"{model_name}-0000.params")
    runtime_vars = {
        "inference_runtime_wheelhouse_src": str(wheelhouse.ensure_runtime_wheelhouse()),
        "inference_runtime_verify": False,
        "greengrass_v2_nucleus_archive_src": str(nucleus_archive),
        "greengrass_v2_nucleus_version": "2.0.0",
        "greengrass_v2_detector_model_archive": str(model_archive),
        "greengrass_v2_detector_model_prefix": model_name,
    }
    run = run_playbook(
        V2_PLAYBOOK,
        fleet.inventory,
        "-i",
        str(LOCAL_TESTBED_INVENTORY),
        "-i",
        str(groups),
        "--tags",
        "runtime",
        extra_vars=runtime_vars,
    )
    assert run.returncode == 0, run.describe()
    installed = fleet.run(host, "/opt/edgeml/inference-venv/bin/python -m pip list --format json")
    versions = {p["name"]: p["version"] for p in json.loads(installed.stdout)}
    assert [f"{name}=={versions.get(name)}" for name in ("awsiotsdk", "awscrt")] == pins_of_the_role()

    playbook = tmp_path / "files.yml"
    playbook.write_text(FILES_PLAYBOOK % {"dir": DEVICE_DIR})
    copied = run_playbook(playbook, fleet.inventory, extra_vars={"files": files})
    assert copied.returncode == 0, copied.describe()

    standin = f"python3 {DEVICE_DIR}/standin/server.py"
    control = f"--control {DEVICE_RUN}/control"
    started = fleet.run(
        host,
        f"sudo mkdir -p {DEVICE_RUN} && sudo systemd-run --unit edgeml-itest-ipc {standin} serve "
        f"--socket {DEVICE_RUN}/ipc.socket --auth-token {SVCUID} {control} && "
        f"for i in $(seq 50); do sudo test -S {DEVICE_RUN}/control && exit 0; sleep 0.2; done; exit 1",
    )
    assert started.returncode == 0, (
        started.stdout + started.stderr + fleet.run(host, "sudo journalctl -u edgeml-itest-ipc").stdout
    )
    # The system python3 of the device runs the stand-in: Debian's, not the runtime's virtualenv.
    assert "path=/usr/bin/python3 ;" in fleet.run(host, "systemctl show -p ExecStart edgeml-itest-ipc").stdout

    environment = {
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": f"{DEVICE_RUN}/ipc.socket",
        "SVCUID": SVCUID,
        "PYTHONPATH": f"{DEVICE_DIR}/code",
        **detector_environment(f"{DEVICE_DIR}/model/{model_name}"),
        "DETECTOR_BACKEND": "onnxruntime",
    }
    setenv = " ".join(f"--setenv={key}={value}" for key, value in environment.items())
    python = "/opt/edgeml/inference-venv/bin/python"
    component = fleet.run(
        host,
        f"sudo systemd-run --unit edgeml-itest-detector {setenv} {python} -u {DEVICE_DIR}/greengrass_v2_detector.py",
    )
    assert component.returncode == 0, component.stderr
    journal = "sudo journalctl --no-pager -u edgeml-itest-detector -u edgeml-itest-ipc"
    subscribed = fleet.run(host, f"sudo {standin} wait-subscribed {control} --topic {INPUT_TOPIC} --timeout 120", 150)
    assert subscribed.returncode == 0, subscribed.stdout + fleet.run(host, journal).stdout
    event = json.dumps({"image_path": f"{DEVICE_DIR}/scene.png"})
    injected = fleet.run(host, f"sudo {standin} inject {control} --topic {INPUT_TOPIC} --payload '{event}'")
    assert json.loads(injected.stdout) == {"delivered": 1}, injected.stdout + injected.stderr
    published = fleet.run(host, f"sudo {standin} wait-published {control} --count 1 --timeout 120", 150)
    assert published.returncode == 0, published.stdout + fleet.run(host, journal).stdout
    state = json.loads(fleet.run(host, f"sudo {standin} state {control}").stdout)
    [record] = state["published"]
    assert record["topic"] == OUTPUT_TOPIC
    assert_expected_detections(json.loads(record["payload"]), f"{DEVICE_DIR}/scene.png")
    assert json.loads(record["payload"])["inference"] == {"backend": "onnxruntime", "device": "CPUExecutionProvider"}
    assert fleet.run(host, "systemctl is-active edgeml-itest-detector").stdout.strip() == "active"
    fleet.run(host, "sudo systemctl stop edgeml-itest-detector")

    # A model that does not load: the entry point exits non-zero, after connecting and before subscribing.
    env_argv = " ".join(f"{key}={value}" for key, value in environment.items())
    env_argv = env_argv.replace(f"MODEL_PATH={DEVICE_DIR}/model/", f"MODEL_PATH={DEVICE_DIR}/missing/")
    broken = fleet.run(host, f"sudo env {env_argv} timeout 120 {python} -u {DEVICE_DIR}/greengrass_v2_detector.py", 150)
    assert broken.returncode not in (0, 124), broken.stdout + broken.stderr
    after = json.loads(fleet.run(host, f"sudo {standin} state {control}").stdout)
    assert after["history"][len(state["history"]) :] == ["CONNECT"], after
    assert after["refused"] == []
    fleet.run(host, "sudo systemctl stop edgeml-itest-ipc")
