"""The edgeml.greengrass.aws_iot inventory plugin, read by ansible-inventory from the local AWS endpoint.

Real parts: ansible-inventory loads the plugin from the collection (through `plugin:` and the `auto` plugin, as a user's
`*.aws_iot.yml` file is), and the plugin calls the endpoint's AWS IoT (moto) and Greengrass V2 emulation. Core devices
are registered with the test bed's control, the way a nucleus's first connection registers one; a device answering over
SSH through this inventory is tested in tests/e2e/test_greengrass_v2_through_the_bed.py.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import requests
import yaml

from testbed.fault_proxy import FaultPlan, FaultProxy
from tests.roles.playbook_json import without_unsafe_markers

pytestmark = pytest.mark.aws

# thing: (thing groups, attributes, core device status or None for a thing that is no V2 core device, architecture)
DEVICES = {
    "cam-01": (["fleet"], {"address": "10.0.0.5", "gpu": "true"}, "HEALTHY", "aarch64"),
    "cam-02": (["fleet-line-2"], {}, "UNHEALTHY", "amd64"),
    "cam-03": (["fleet"], {"address": "cam-03.plant.example"}, None, None),  # a V1 core, or not provisioned yet
    "gate-01": (["other-team"], {}, "HEALTHY", "amd64"),
    "test-client": ([], {}, None, None),  # a thing that is no device: in no listed group, no core device
}
# More things than one ListThings page holds (250), so that paging is exercised.
FILLER_THINGS = 255


@pytest.fixture
def things(clean_aws, aws_client):
    iot = aws_client("iot")
    iot.create_thing_group(thingGroupName="fleet")
    iot.create_thing_group(thingGroupName="fleet-line-2", parentGroupName="fleet")
    iot.create_thing_group(thingGroupName="other-team")
    for index in range(FILLER_THINGS):
        iot.create_thing(thingName=f"filler-{index:03d}")
    for name, (groups, attributes, status, architecture) in DEVICES.items():
        iot.create_thing(thingName=name, attributePayload={"attributes": attributes})
        for group in groups:
            iot.add_thing_to_thing_group(thingGroupName=group, thingName=name)
        if status:
            body = {"thing_name": name, "status": status, "architecture": architecture, "core_version": "2.16.1"}
            answer = requests.post(f"{clean_aws.url}/moto-api/static/greengrassv2/core-device", json=body, timeout=10)
            assert answer.ok, answer.text
    return clean_aws


def inventory(tmp_path, ansible_env, config: dict, *options: str, env: dict | None = None, name="edge.aws_iot.yml"):
    """ansible-inventory --list on a plugin configuration file: (exit status, parsed output or stderr)."""
    source = tmp_path / name
    source.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        ["ansible-inventory", "-i", str(source), "--list", *options],
        env=env or ansible_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        return done.returncode, done.stderr
    return 0, without_unsafe_markers(json.loads(done.stdout))


def members(listed: dict, group: str) -> set[str]:
    return set(listed.get(group, {}).get("hosts", []))


def test_hosts_of_thing_groups_with_their_core_device_and_groups(things, tmp_path, ansible_env):
    config = {
        "plugin": "edgeml.greengrass.aws_iot",
        "thing_groups": ["fleet"],
        "keyed_groups": [{"key": "greengrass_architecture", "prefix": "arch"}],
        "compose": {"edgeml_gpu": "iot_attributes.gpu | default('false') == 'true'"},
    }
    rc, listed = inventory(tmp_path, ansible_env, config)
    assert rc == 0, listed
    hostvars = listed["_meta"]["hostvars"]
    assert set(hostvars) == {"cam-01", "cam-02", "cam-03"}
    assert members(listed, "edge_devices") == {"cam-01", "cam-02", "cam-03"}
    # Thing groups nest as in AWS IoT: the child group's device is in the parent group too.
    assert members(listed, "thing_group_fleet") == {"cam-01", "cam-03"}
    assert members(listed, "thing_group_fleet_line_2") == {"cam-02"}
    assert "thing_group_fleet_line_2" in listed["thing_group_fleet"]["children"]
    assert members(listed, "greengrass_v2") == {"cam-01", "cam-02"}
    assert members(listed, "greengrass_no_core_device") == {"cam-03"}
    assert members(listed, "greengrass_healthy") == {"cam-01"}
    assert members(listed, "greengrass_unhealthy") == {"cam-02"}
    assert members(listed, "arch_aarch64") == {"cam-01"} and members(listed, "arch_amd64") == {"cam-02"}

    cam = hostvars["cam-01"]
    assert cam["ansible_host"] == "10.0.0.5" and cam["edgeml_gpu"] is True
    assert cam["iot_thing_arn"].endswith(":thing/cam-01") and cam["iot_thing_groups"] == ["fleet"]
    assert cam["iot_attributes"] == {"address": "10.0.0.5", "gpu": "true"}
    assert (cam["greengrass_core_device"], cam["greengrass_status"], cam["greengrass_core_version"]) == (
        True,
        "HEALTHY",
        "2.16.1",
    )
    assert (cam["greengrass_platform"], cam["greengrass_architecture"]) == ("linux", "aarch64")
    assert hostvars["cam-03"]["ansible_host"] == "cam-03.plant.example"
    assert hostvars["cam-03"]["greengrass_core_device"] is False and hostvars["cam-03"]["greengrass_status"] is None
    assert "ansible_host" not in hostvars["cam-02"] and hostvars["cam-02"]["edgeml_gpu"] is False


def test_statuses_and_things_without_core_device_filter_the_hosts(things, tmp_path, ansible_env):
    # No thing group: every core device of the region, each with all of its thing groups.
    rc, listed = inventory(tmp_path, ansible_env, {"plugin": "edgeml.greengrass.aws_iot", "statuses": ["HEALTHY"]})
    assert rc == 0, listed
    assert set(listed["_meta"]["hostvars"]) == {"cam-01", "gate-01"}
    assert listed["_meta"]["hostvars"]["gate-01"]["iot_thing_groups"] == ["other-team"]
    assert members(listed, "thing_group_other_team") == {"gate-01"}

    config = {
        "plugin": "edgeml.greengrass.aws_iot",
        "thing_groups": ["fleet"],
        "include_things_without_core_device": False,
        "parent_group": "",
    }
    rc, listed = inventory(tmp_path, ansible_env, config)
    assert rc == 0, listed
    assert set(listed["_meta"]["hostvars"]) == {"cam-01", "cam-02"} and "edge_devices" not in listed


def test_filters_keep_the_things_whose_attributes_and_type_match(things, tmp_path, ansible_env):
    config = {"plugin": "edgeml.greengrass.aws_iot", "thing_groups": ["fleet"], "filters": {"attribute:gpu": "true"}}
    rc, listed = inventory(tmp_path, ansible_env, config)
    assert rc == 0 and set(listed["_meta"]["hostvars"]) == {"cam-01"}, listed
    config["filters"] = {"attribute:address": ["10.0.0.5", "cam-03.plant.example"], "thing_type": "no-such-type"}
    rc, listed = inventory(tmp_path, ansible_env, config)
    assert rc == 0 and set(listed.get("_meta", {}).get("hostvars", {})) == set(), listed
    config["filters"] = {"attribute:address": ["10.0.0.5", "cam-03.plant.example"]}
    rc, listed = inventory(tmp_path, ansible_env, config)
    assert rc == 0 and set(listed["_meta"]["hostvars"]) == {"cam-01", "cam-03"}, listed


def test_the_inventory_cache_answers_until_flushed(things, tmp_path, ansible_env, aws_client):
    config = {
        "plugin": "edgeml.greengrass.aws_iot",
        "thing_groups": ["fleet"],
        "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(tmp_path / "cache"),
        "cache_timeout": 3600,
    }
    rc, first = inventory(tmp_path, ansible_env, config)
    assert rc == 0, first
    iot = aws_client("iot")
    iot.create_thing(thingName="cam-04")
    iot.add_thing_to_thing_group(thingGroupName="fleet", thingName="cam-04")
    rc, cached = inventory(tmp_path, ansible_env, config)
    assert rc == 0 and set(cached["_meta"]["hostvars"]) == {"cam-01", "cam-02", "cam-03"}, cached
    rc, flushed = inventory(tmp_path, ansible_env, config, "--flush-cache")
    assert rc == 0 and set(flushed["_meta"]["hostvars"]) == {"cam-01", "cam-02", "cam-03", "cam-04"}, flushed


def test_throttled_and_failed_calls_are_retried(things, tmp_path, ansible_env):
    config = {"plugin": "edgeml.greengrass.aws_iot", "thing_groups": ["fleet"]}
    rc, straight = inventory(tmp_path, ansible_env, config)
    assert rc == 0, straight
    plan = FaultPlan(throttle=0.3, error=0.1, seed=16)
    with FaultProxy(things.url, plan) as proxy:
        rc, through_faults = inventory(tmp_path, ansible_env, config, env=dict(ansible_env, AWS_ENDPOINT_URL=proxy.url))
    assert rc == 0, through_faults
    assert plan.counts().get("throttle") and plan.counts().get("error"), (
        f"too few faults to show retries: {plan.counts()}"
    )
    assert through_faults == straight


@pytest.mark.parametrize(
    ("config", "env_change", "message"),
    [
        ({"statuses": ["RUNNING"]}, {}, "Invalid value ['RUNNING'] for config 'statuses'"),
        ({"thing_groups": ["fleet", ""]}, {}, "`thing_groups` has ['']"),
        ({"address_attribute": ""}, {}, "`address_attribute` is empty"),
        (
            {"filters": {"tag:Name": "x"}},
            {},
            "`filters` has the key 'tag:Name': expected thing_type or attribute:<name>",
        ),
        (
            {"thing_groups": ["no-such-group"]},
            {},
            "thing group 'no-such-group' of `thing_groups` does not exist in us-east-1",
        ),
        ({}, {"AWS_REGION": None, "AWS_DEFAULT_REGION": None}, "no region to read: set `regions`"),
    ],
)
def test_wrong_input_names_the_option(things, tmp_path, ansible_env, config, env_change, message):
    # An inventory source that fails to parse is only a warning by default; a user's CI sets this to make it fatal.
    env = dict(ansible_env, ANSIBLE_INVENTORY_UNPARSED_FAILED="true", **env_change)
    env = {k: v for k, v in env.items() if v is not None}
    rc, stderr = inventory(tmp_path, env, {"plugin": "edgeml.greengrass.aws_iot", **config})
    assert rc != 0, stderr
    assert message in " ".join(str(stderr).split()), stderr
