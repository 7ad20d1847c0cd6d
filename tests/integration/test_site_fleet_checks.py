"""site.yml's fleet-wide inventory checks, and the AWS client settings every AWS module gets from the playbooks.

Checks: two hosts with one thing name are refused naming both, a region botocore does not list for AWS IoT and the
host's Greengrass generation is refused (unless explicitly allowed), and the retry/timeout settings are checked.
These run in site.yml's first play, before any host is contacted: the inventory's hosts point at a closed port on
loopback, so a host that passes them is unreachable at the next play's fact gathering, and one refused never gets
there. The client settings test runs a real module of the collection against a real TCP server that accepts and
never answers, with the playbooks' own vars file and module_defaults.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from testbed.aws_endpoint import free_port
from tests.roles.playbook_json import REPO_ROOT, localhost_inventory, run_playbook

SITE = REPO_ROOT / "playbooks" / "site.yml"
FLEET_CHECK = "No other host of the run has this host's thing name"
REGION_CHECK = "The AWS region offers AWS IoT and the host's Greengrass generation"
CLIENT_CHECK = "The AWS client settings are usable"


def unreachable_inventory(tmp_path: Path, hosts: dict[str, dict]) -> Path:
    closed_port = free_port()
    base = {
        "ansible_host": "127.0.0.1",
        "ansible_port": closed_port,
        "ansible_user": "nobody",
        "ansible_ssh_common_args": "-o ConnectTimeout=2 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    }
    inventory = {
        "all": {
            "children": {
                "edge_devices": {
                    "vars": {"edgeml_aws_region": "us-east-1"},
                    "hosts": {name: dict(base, **host_vars) for name, host_vars in hosts.items()},
                }
            }
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def site(tmp_path, hosts):
    # No tag matches: the first play's checks (tagged always) run, the roles' tasks do not.
    run = run_playbook(SITE, unreachable_inventory(tmp_path, hosts), "--tags", "edgeml-none", timeout=300)
    assert "unparsed_stdout" not in run.output, run.describe()
    return run


def test_two_hosts_with_one_thing_name_are_refused_naming_both(tmp_path):
    run = site(
        tmp_path,
        {
            "cam-a": {"iot_device_credentials_thing_name": "dock-cam"},
            "cam-b": {"iot_device_credentials_thing_name": "dock-cam"},
            "dock-cam": {},  # no thing name set: its hostname, the same thing again
            "cam-c": {},
        },
    )
    results = run.results(FLEET_CHECK)
    for host, others in [("cam-a", "cam-b, dock-cam"), ("cam-b", "cam-a, dock-cam"), ("dock-cam", "cam-a, cam-b")]:
        assert results[host]["failed"], results[host]
        assert results[host]["msg"].startswith(f"{host} and {others} have the same thing name dock-cam"), results[host]
        assert run.stats(host)["unreachable"] == 0, "a refused host was contacted"
    assert not results["cam-c"].get("failed")
    assert run.stats("cam-c")["unreachable"] == 1, "the host that passed did not go on to the next play"


def test_unknown_region_is_refused_unless_allowed(tmp_path):
    run = site(
        tmp_path,
        {
            "cam-a": {"edgeml_aws_region": "us-east-9"},
            "cam-b": {"edgeml_aws_region": "us-east-9", "edgeml_aws_region_unlisted_ok": True},
            # AWS IoT is offered in eu-north-1, Greengrass (either generation) is not.
            "cam-c": {"edgeml_aws_region": "eu-north-1"},
            "cam-d": {"edgeml_aws_region": "eu-west-1", "edgeml_greengrass_generation": "v1"},
        },
    )
    results = run.results(REGION_CHECK)
    assert results["cam-a"]["failed"] and results["cam-a"]["msg"].startswith(
        "edgeml_aws_region=us-east-9 on cam-a: the controller's botocore lists no such region for both AWS IoT and "
        "greengrassv2"
    ), results["cam-a"]
    assert "edgeml_aws_region_unlisted_ok=true" in results["cam-a"]["msg"]
    assert results["cam-c"]["failed"] and "eu-north-1" in results["cam-c"]["msg"]
    assert not results["cam-b"].get("failed") and not results["cam-d"].get("failed")


def test_bad_client_settings_are_refused_naming_them(tmp_path):
    run = site(
        tmp_path,
        {
            "cam-a": {"edgeml_aws_max_attempts": 0},
            "cam-b": {"edgeml_aws_retry_mode": "aggressive"},
            "cam-c": {"edgeml_aws_read_timeout": "soon"},
            "cam-d": {"edgeml_aws_max_attempts": 4, "edgeml_aws_retry_mode": "adaptive"},
        },
    )
    results = run.results(CLIENT_CHECK)
    assert results["cam-a"]["failed"] and "edgeml_aws_max_attempts=0" in results["cam-a"]["msg"]
    assert results["cam-b"]["failed"] and "edgeml_aws_retry_mode=aggressive" in results["cam-b"]["msg"]
    assert results["cam-c"]["failed"] and "edgeml_aws_read_timeout=soon" in results["cam-c"]["msg"]
    assert not results["cam-d"].get("failed")


def test_v2_hosts_are_provisioned_when_every_v1_host_failed(tmp_path):
    # ansible-core ends the whole playbook after a play in which every host failed or was unreachable: the V1 play
    # once held only V1 hosts, so with both V1 devices down the V2 device was never provisioned.
    run = site(
        tmp_path,
        {
            "cam-a": {"edgeml_greengrass_generation": "v1"},
            "cam-b": {"edgeml_greengrass_generation": "v1"},
            "cam-c": {"edgeml_greengrass_generation": "v2"},
        },
    )
    gathered = [
        (play["play"]["name"], sorted(task["hosts"]))
        for play in run.output["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Gather the device's facts"
    ]
    assert gathered == [
        ("Provision the device's cloud identity, runtime, Greengrass V1 core and detector", ["cam-a", "cam-b"]),
        ("Provision the device's cloud identity, runtime, Greengrass V2 nucleus and detector", ["cam-c"]),
    ], gathered
    assert [run.stats(host)["unreachable"] for host in ("cam-a", "cam-b", "cam-c")] == [1, 1, 1]


@pytest.fixture
def silent_endpoint():
    """A TCP server that accepts every connection and never answers (a hung endpoint); counts connections."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    server.close()
    for conn in accepted:
        conn.close()


def read_a_thing_with_the_playbooks_settings(tmp_path, url: str, settings: dict) -> tuple[dict, float]:
    """One AWS module task with the provisioning playbooks' vars file and module_defaults; (result, seconds)."""
    playbook = tmp_path / "aws_client.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "An AWS call with the playbooks' client settings",
                    "hosts": "all",
                    "gather_facts": False,
                    "vars_files": [str(REPO_ROOT / "playbooks" / "vars" / "aws_client.yml")],
                    # The same module_defaults as the provisioning playbooks.
                    "module_defaults": {
                        "group/edgeml.greengrass.aws": {
                            "region": "us-east-1",
                            "aws_config": "{{ __edgeml_aws_client_config }}",
                            "endpoint_url": url,
                            "access_key": "testing",
                            "secret_key": "testing",  # noqa: S105 (never leaves loopback)
                        }
                    },
                    "tasks": [
                        {"name": "Read a thing", "edgeml.greengrass.iot_device_identity_info": {"thing_name": "x"}}
                    ],
                }
            ]
        )
    )
    started = time.monotonic()
    run = run_playbook(playbook, localhost_inventory(tmp_path), extra_vars=settings, timeout=120)
    elapsed = time.monotonic() - started
    result = run.results("Read a thing")["localhost"]
    assert result.get("failed"), run.describe()
    return result, elapsed


def test_hung_endpoint_fails_within_the_configured_attempts_and_timeout(tmp_path, silent_endpoint):
    url, accepted = silent_endpoint
    settings = {"edgeml_aws_max_attempts": 3, "edgeml_aws_read_timeout": 2, "edgeml_aws_connect_timeout": 2}
    result, elapsed = read_a_thing_with_the_playbooks_settings(tmp_path, url, settings)
    assert "Read timeout" in json.dumps(result), result
    # 3 attempts of 2 s each (plus backoff and ansible's start-up), not botocore's 3 x 60 s.
    assert len(accepted) == 3, f"{len(accepted)} connections"
    assert elapsed < 40, f"{elapsed:.0f} s"


def test_closed_endpoint_port_fails_with_a_connection_error_after_the_configured_attempts(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result, elapsed = read_a_thing_with_the_playbooks_settings(tmp_path, url, {"edgeml_aws_max_attempts": 3})
    assert f'Could not connect to the endpoint URL: \\"{url}/things/x\\"' in json.dumps(result), result
    assert elapsed < 40, f"{elapsed:.0f} s"
