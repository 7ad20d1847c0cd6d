"""A simulated Greengrass V2 device talks to the test bed's data plane with the files the roles installed.

The iot_device_credentials role runs on a real (simulated) Debian device with the options
``provision_greengrass_v2.yml`` gives it: the key is made on the device, the certificate and policy in the
local endpoint. Then a client runs **on the device** (its own python3, paho-mqtt as a zip of the pure-Python
package, the bed's ``client.py``) with the role's key, certificate and the bed's root CA: it connects with the
thing name and a ``#2`` client ID, receives a deployment as an IoT job, reports it, sends health telemetry and
exchanges its certificate for the token exchange role's credentials. The device shares the host's network, so
the bed's loopback ports are reachable; the AWS host names are sent as TLS server names.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import paho
import pytest
import yaml

from tests.roles.playbook_json import run_playbook

REPO_ROOT = Path(__file__).resolve().parents[2]
DEBIAN_ROOT_CA_1 = "/usr/share/ca-certificates/mozilla/Amazon_Root_CA_1.crt"
ALIAS = "GreengrassV2TokenExchangeRoleAlias"
THING_GROUP = "edgeml-detectors"
PROBE_DIR = "/var/lib/edgeml-probe"

# Runs on the device with its system python3: stdlib, paho (zip) and the bed's client.py only.
PROBE = r"""
import http.client, json, socket, ssl, sys
from client import DataPlaneClient

args = json.loads(sys.argv[1])
certs = args["cert_dir"]
cert, key, ca = certs + "/device.cert.pem", certs + "/device.private.key", args["bed_ca"]
thing, jobs = args["thing"], "$aws/things/%s/jobs/" % args["thing"]
report = {}

def connect(client_id):
    c = DataPlaneClient(args["data_plane"], args["ats_host"], client_id, cert, key, ca, timeout=10)
    report["connect " + client_id] = c.connect().ok
    return c

main, second = connect(thing), connect(thing + "#2")
report["subscribe notify-next"] = second.subscribe(jobs + "notify-next").ok
health = {"ggcVersion": "2.14.3", "platform": "linux", "architecture": "amd64", "runtime": "aws_nucleus_classic",
          "thing": thing, "overallDeviceStatus": "HEALTHY", "sequenceNumber": 1, "timestamp": 0,
          "messageType": "COMPLETE", "trigger": "NUCLEUS_LAUNCH", "components": []}
report["health"] = main.publish("$aws/things/%s/greengrassv2/health/json" % thing, json.dumps(health)).ok
report["$next/get"] = main.publish(jobs + "$next/get", json.dumps({"clientToken": "probe"})).ok
topic, payload = main.receive() or (None, b"{}")
execution = json.loads(payload).get("execution") or {}
document = execution.get("jobDocument", {})
report["job"] = {"topic": topic, "jobId": execution.get("jobId"), "components": document.get("components")}
if execution:
    update = jobs + execution["jobId"] + "/update"
    details = {"detailed-deployment-status": "SUCCESSFUL"}
    main.publish(update, json.dumps({"status": "SUCCEEDED", "statusDetails": details}))
    topic, payload = main.receive() or (None, b"{}")
    report["update"] = {"topic": topic, "status": json.loads(payload).get("executionState", {}).get("status")}
report["other thing's jobs"] = main.subscribe("$aws/things/someone-else/jobs/notify-next").codes
main.close(); second.close()

context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(cert, key)
raw = socket.create_connection((args["https"]["host"], args["https"]["port"]), timeout=10)
connection = http.client.HTTPSConnection(args["credentials_host"])
connection.sock = context.wrap_socket(raw, server_hostname=args["credentials_host"])
connection.request("GET", "/role-aliases/%s/credentials" % args["alias"], headers={"x-amzn-iot-thingname": thing})
answer = connection.getresponse()
body = json.loads(answer.read())
report["credentials"] = {"status": answer.status, "fields": sorted(body.get("credentials", {}))}
print(json.dumps(report))
"""


def paho_zip(folder: Path) -> Path:
    """paho-mqtt is pure Python: a zip of the controller's package imports on the device (zipimport)."""
    target = folder / "paho.zip"
    package = Path(paho.__file__).parent
    with zipfile.ZipFile(target, "w") as archive:
        for path in package.rglob("*.py"):
            archive.write(path, path.relative_to(package.parent))
    return target


@pytest.mark.devices
@pytest.mark.aws
def test_device_uses_the_credentials_the_role_installed_against_the_data_plane(
    edge_devices, clean_aws, ansible_env, aws_client, tmp_path
):
    iot, iam, greengrass = aws_client("iot"), aws_client("iam"), aws_client("greengrassv2")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"Service": "credentials.iot.amazonaws.com"}}]}  # fmt: skip
    role = iam.create_role(RoleName="GreengrassV2TokenExchangeRole", AssumeRolePolicyDocument=json.dumps(trust))
    iot.create_role_alias(roleAlias=ALIAS, roleArn=role["Role"]["Arn"])

    fleet = edge_devices(count=1)
    host = next(iter(fleet.hosts))
    data_plane = clean_aws.data_plane()
    (tmp_path / "bed-ca.pem").write_text(data_plane["root_ca_pem"])
    (tmp_path / "probe.py").write_text(PROBE)
    shutil.copy(REPO_ROOT / "testbed/iot_data_plane/client.py", tmp_path / "client.py")
    paho_zip(tmp_path)
    probe_args = {
        "thing": host,
        "cert_dir": "/greengrass/certs",
        "bed_ca": PROBE_DIR + "/bed-ca.pem",
        "data_plane": data_plane,
        "https": data_plane["credentials"],
        "ats_host": iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"],
        "credentials_host": iot.describe_endpoint(endpointType="iot:CredentialProvider")["endpointAddress"],
        "alias": ALIAS,
    }
    play = {
        "name": "V2 device identity, then the data plane from the device",
        "hosts": "edge_devices",
        "gather_facts": False,
        "module_defaults": {"group/edgeml.greengrass.aws": clean_aws.module_options()},
        "roles": [
            {
                "role": "edgeml.greengrass.iot_device_credentials",
                # As provision_greengrass_v2.yml sets them.
                "iot_device_credentials_greengrass_v1_core": False,
                "iot_device_credentials_greengrass_v2_core": True,
                "iot_device_credentials_token_exchange_role_aliases": [ALIAS],
                "iot_device_credentials_thing_groups": [THING_GROUP],
                "iot_device_credentials_create_thing_groups": True,
                "iot_device_credentials_topic_prefixes": [host + "/", "blog/infer/"],
                "iot_device_credentials_root_ca_src": DEBIAN_ROOT_CA_1,
            }
        ],
    }
    (tmp_path / "identity.yml").write_text(yaml.safe_dump([play], sort_keys=False))
    run = run_playbook(tmp_path / "identity.yml", fleet.inventory, env=ansible_env, timeout=600)
    assert run.returncode == 0, run.describe()

    # A deployment for the device's thing group, made through the API while the device is offline.
    recipe = {"RecipeFormatVersion": "2020-01-25", "ComponentName": "com.example.Hello", "ComponentVersion": "1.0.0",
              "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"run": "echo hello"}}]}  # fmt: skip
    greengrass.create_component_version(inlineRecipe=json.dumps(recipe).encode())
    group_arn = iot.describe_thing_group(thingGroupName=THING_GROUP)["thingGroupArn"]
    deployment = greengrass.create_deployment(
        targetArn=group_arn, components={"com.example.Hello": {"componentVersion": "1.0.0"}}
    )

    probe = {
        "name": "Probe the data plane from the device",
        "hosts": "edge_devices",
        "gather_facts": False,
        "become": True,
        "tasks": [
            {"name": "Probe folder", "ansible.builtin.file": {"path": PROBE_DIR, "state": "directory", "mode": "0700"}},
            {
                "name": "Probe files",
                "ansible.builtin.copy": {"src": "{{ item }}", "dest": PROBE_DIR + "/", "mode": "0600"},
                "loop": [str(tmp_path / n) for n in ("probe.py", "client.py", "paho.zip", "bed-ca.pem")],
            },
            {
                "name": "Run the probe with the device's python3",
                "ansible.builtin.command": {
                    "argv": ["python3", PROBE_DIR + "/probe.py", json.dumps(probe_args)],
                    "chdir": PROBE_DIR,
                },
                "environment": {"PYTHONPATH": PROBE_DIR + "/paho.zip:" + PROBE_DIR},
                "register": "probe",
                "changed_when": False,
            },
            {
                "name": "Keep the probe's report",
                "ansible.builtin.copy": {"content": "{{ probe.stdout }}", "dest": str(tmp_path / "report.json")},
                "delegate_to": "localhost",
                "become": False,
                "vars": {"ansible_connection": "local"},
            },
            {"name": "No probe left on the device", "ansible.builtin.file": {"path": PROBE_DIR, "state": "absent"}},
        ],
    }
    (tmp_path / "probe.yml").write_text(yaml.safe_dump([probe], sort_keys=False))
    run = run_playbook(tmp_path / "probe.yml", fleet.inventory, env=ansible_env, timeout=300)
    assert run.returncode == 0, run.describe()
    report = json.loads((tmp_path / "report.json").read_text())

    assert report["connect " + host] and report["connect " + host + "#2"], report
    assert report["subscribe notify-next"] and report["health"] and report["$next/get"], report
    assert report["job"]["jobId"] == deployment["iotJobId"], report
    assert report["job"]["components"] == {"com.example.Hello": {"componentVersion": "1.0.0"}}
    assert report["update"]["status"] == "SUCCEEDED", report
    assert report["other thing's jobs"] == [0x80], report
    assert report["credentials"] == {
        "status": 200,
        "fields": ["accessKeyId", "expiration", "secretAccessKey", "sessionToken"],
    }, report
    # What the device did is what the control plane now shows.
    assert greengrass.get_core_device(coreDeviceThingName=host)["status"] == "HEALTHY"
    [effective] = greengrass.list_effective_deployments(coreDeviceThingName=host)["effectiveDeployments"]
    assert (effective["deploymentId"], effective["coreDeviceExecutionStatus"]) == (
        deployment["deploymentId"],
        "SUCCEEDED",
    )
