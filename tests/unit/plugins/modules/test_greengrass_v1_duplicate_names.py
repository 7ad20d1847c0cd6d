"""Two Greengrass groups with one name: the modules refuse to guess, name the ids, and write nothing.

The collection's modules never make such a pair, so the test makes it with boto3 on the local AWS
endpoint (real HTTP, moto server), then runs the modules with ansible's ad-hoc command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[4]
ACCOUNT = "123456789012"


def run_module(ansible_env, module: str, args: dict) -> dict:
    """One module run on localhost; its JSON result."""
    env = dict(ansible_env, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "localhost",
            "-c",
            "local",
            "-e",
            json.dumps({"ansible_python_interpreter": sys.executable}),
            "-m",
            f"edgeml.greengrass.{module}",
            "-a",
            json.dumps(args),
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    result = json.loads(proc.stdout)
    return result["plays"][0]["tasks"][0]["hosts"]["localhost"]


def core_definition_version(greengrass, name):
    core = greengrass.create_core_definition(
        Name=name,
        InitialVersion={
            "Cores": [
                {
                    "Id": "twin-core",
                    "ThingArn": f"arn:aws:iot:us-east-1:{ACCOUNT}:thing/twin-core",
                    "CertificateArn": f"arn:aws:iot:us-east-1:{ACCOUNT}:cert/{'c' * 64}",
                    "SyncShadow": True,
                }
            ]
        },
    )
    return core["LatestVersionArn"]


@pytest.mark.aws
def test_groups_sharing_a_name_are_refused(clean_aws, aws_client, ansible_env):
    greengrass = aws_client("greengrass")
    ids = sorted(
        greengrass.create_group(
            Name="twin", InitialVersion={"CoreDefinitionVersionArn": core_definition_version(greengrass, "other-core")}
        )["Id"]
        for _ in range(2)
    )

    group = run_module(
        ansible_env,
        "greengrass_v1_group",
        {
            "name": "twin",
            "core": {
                "thing_arn": f"arn:aws:iot:us-east-1:{ACCOUNT}:thing/twin-core",
                "certificate_arn": f"arn:aws:iot:us-east-1:{ACCOUNT}:cert/{'c' * 64}",
            },
        },
    )
    deployment = run_module(ansible_env, "greengrass_v1_deployment", {"group_name": "twin", "wait": False})
    info = run_module(ansible_env, "greengrass_v1_group_info", {"name": "twin"})
    removal = run_module(ansible_env, "greengrass_v1_group", {"name": "twin", "state": "absent"})

    for result in (group, deployment, info, removal):
        assert result.get("failed"), result
        assert "2 Greengrass groups are named 'twin'" in result["msg"]
        assert ids[0] in result["msg"] and ids[1] in result["msg"]
    assert sorted(g["Id"] for g in greengrass.list_groups()["Groups"]) == ids
    assert [d["Name"] for d in greengrass.list_core_definitions()["Definitions"]] == ["other-core", "other-core"]
    for group_id in ids:
        assert greengrass.list_deployments(GroupId=group_id)["Deployments"] == []
