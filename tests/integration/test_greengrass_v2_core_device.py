"""edgeml.greengrass.greengrass_v2_core_device against the local endpoint's Greengrass V2 emulation (DeleteCoreDevice).

The core device is registered with the test bed's control, as a nucleus's first connection registers one.
"""

from __future__ import annotations

import pytest
import requests

from tests.roles.playbook_json import run_module_process

pytestmark = pytest.mark.aws

THING = "core-to-retire"


@pytest.fixture
def core_device(clean_aws, aws_client, tmp_path):
    aws_client("iot").create_thing(thingName=THING)
    body = {"thing_name": THING, "status": "HEALTHY", "core_version": "2.16.1"}
    answer = requests.post(f"{clean_aws.url}/moto-api/static/greengrassv2/core-device", json=body, timeout=10)
    assert answer.ok, answer.text
    runs = iter(range(100))

    def run(check_mode: bool = False, **options) -> dict:
        args = dict(clean_aws.module_options(), **options)
        if check_mode:
            args["_ansible_check_mode"] = True
        return run_module_process("greengrass_v2_core_device", args, tmp_path / f"run-{next(runs)}.json")

    return run


def core_devices(aws_client) -> list[str]:
    return [d["coreDeviceThingName"] for d in aws_client("greengrassv2").list_core_devices()["coreDevices"]]


def test_removes_the_core_device_record_and_keeps_the_thing(core_device, aws_client):
    predicted = core_device(check_mode=True, thing_name=THING, state="absent")
    assert predicted["changed"] and predicted["core_device"]["core_version"] == "2.16.1", predicted
    assert core_devices(aws_client) == [THING], "check mode removed the core device"

    removed = core_device(thing_name=THING, state="absent")
    assert removed["changed"] and removed["core_device"]["status"] == "HEALTHY", removed
    assert core_devices(aws_client) == []
    # DeleteCoreDevice "doesn't delete the IoT thing" (API reference).
    assert aws_client("iot").describe_thing(thingName=THING)["thingName"] == THING

    again = core_device(thing_name=THING, state="absent")
    assert not again["changed"] and again["core_device"] is None, again


def test_a_wrong_thing_name_is_refused_before_any_call(core_device, aws_client):
    refused = core_device(thing_name="bad/name", state="absent")
    assert refused.get("failed") and "thing_name" in refused["msg"], refused
    assert core_devices(aws_client) == [THING]
