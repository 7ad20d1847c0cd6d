"""greengrass_v1_group converges after a run killed between creating its definitions and creating the group.

The module creates one definition per kind (core, functions, subscriptions...), then the group whose first version
uses them. A run killed in between (SIGKILL: no clean-up runs) leaves definitions named after the group that no
group uses; the re-run must take them instead of making a second set (issue 14 measured 4 of each kind after
such a re-run, instead of 2), and delete the extra ones a retried create left.

Real parts: the module runs as Ansible's module process against the local endpoint, through the fault proxy,
which holds the module's CreateGroup request while the test kills the process with SIGKILL, at that exact point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from testbed.fault_proxy import FaultPlan, FaultProxy, FaultRule
from tests.roles.playbook_json import REPO_ROOT, run_module_process

pytestmark = pytest.mark.aws

GROUP = "interrupted-group"
MODULE = "greengrass_v1_group"


@pytest.fixture
def group_options(clean_aws, aws_client):
    iot = aws_client("iot")
    thing = iot.create_thing(thingName="interrupted-core")
    certificate = iot.create_keys_and_certificate(setAsActive=True)
    return dict(
        clean_aws.module_options(),
        name=GROUP,
        core={"thing_arn": thing["thingArn"], "certificate_arn": certificate["certificateArn"]},
        subscriptions=[{"source": "cloud", "subject": "interrupted/in", "target": thing["thingArn"]}],
    )


def definitions(greengrass) -> dict[str, list[str]]:
    """{kind: [ids]} of the core and subscription definitions named after the group."""
    return {
        kind: sorted(
            d["Id"]
            for d in getattr(greengrass, f"list_{api}_definitions")()["Definitions"]
            if d.get("Name") == f"{GROUP}-{kind}"
        )
        for kind, api in (("core", "core"), ("subscriptions", "subscription"))
    }


def killed_before_create_group(options: dict, tmp_path, endpoint_url: str) -> None:
    """Run the module through the proxy and SIGKILL it while its CreateGroup is held."""
    plan = FaultPlan(rules=[FaultRule("hold", "POST", r"^/greengrass/groups$")])
    with FaultProxy(endpoint_url, plan) as proxy:
        args_file = tmp_path / "killed.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(options, endpoint_url=proxy.url)}))
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / ".collections"))
        process = subprocess.Popen(
            [sys.executable, "-m", f"ansible_collections.edgeml.greengrass.plugins.modules.{MODULE}", str(args_file)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proxy.wait_for("hold")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)


def test_definitions_of_a_killed_run_are_taken_not_made_again(group_options, clean_aws, aws_client, tmp_path):
    greengrass = aws_client("greengrass")
    killed_before_create_group(group_options, tmp_path, clean_aws.url)
    left = definitions(greengrass)
    assert [len(ids) for ids in left.values()] == [1, 1], f"the kill point left {left}"
    assert greengrass.list_groups()["Groups"] == []

    # A lost-response duplicate beside it (a create the client repeated): older, same name, same content.
    duplicate = greengrass.create_core_definition(
        Name=f"{GROUP}-core",
        InitialVersion=greengrass.get_core_definition_version(
            CoreDefinitionId=left["core"][0],
            CoreDefinitionVersionId=greengrass.get_core_definition(CoreDefinitionId=left["core"][0])["LatestVersion"],
        )["Definition"],
    )["Id"]

    predicted = run_module_process(MODULE, dict(group_options, _ansible_check_mode=True), tmp_path / "check.json")
    assert not predicted.get("failed"), predicted
    assert predicted["changed"] and set(predicted["adopted_definitions"]) == {"core", "subscription"}, predicted
    assert definitions(greengrass)["core"] == sorted([left["core"][0], duplicate])  # check mode wrote nothing

    rerun = run_module_process(MODULE, group_options, tmp_path / "rerun.json")
    assert not rerun.get("failed"), rerun
    kept = {kind: ids[0] for kind, ids in definitions(greengrass).items()}
    assert definitions(greengrass) == {kind: [kept[kind]] for kind in kept}, "a definition was made again"
    assert rerun["adopted_definitions"] == {"core": kept["core"], "subscription": kept["subscriptions"]}
    assert [d["id"] for d in rerun["deleted_orphan_definitions"]] == [
        left["core"][0] if kept["core"] == duplicate else duplicate
    ]
    groups = greengrass.list_groups()["Groups"]
    assert [g["Name"] for g in groups] == [GROUP]
    version = greengrass.get_group_version(GroupId=groups[0]["Id"], GroupVersionId=groups[0]["LatestVersion"])
    assert f"/cores/{kept['core']}/" in version["Definition"]["CoreDefinitionVersionArn"]

    again = run_module_process(MODULE, group_options, tmp_path / "again.json")
    assert not again.get("failed") and not again["changed"], again
    assert again["adopted_definitions"] == {} and again["deleted_orphan_definitions"] == []


def test_absent_removes_what_a_killed_run_left_without_a_group(group_options, clean_aws, aws_client, tmp_path):
    greengrass = aws_client("greengrass")
    killed_before_create_group(group_options, tmp_path, clean_aws.url)
    assert [len(ids) for ids in definitions(greengrass).values()] == [1, 1]

    options = dict(clean_aws.module_options(), name=GROUP, state="absent")
    removed = run_module_process(MODULE, options, tmp_path / "absent.json")
    assert not removed.get("failed") and removed["changed"], removed
    assert sorted(d["kind"] for d in removed["deleted"]["definitions"]) == ["core", "subscription"]
    assert definitions(greengrass) == {"core": [], "subscriptions": []}
    gone = run_module_process(MODULE, options, tmp_path / "absent-again.json")
    assert not gone.get("failed") and not gone["changed"], gone
