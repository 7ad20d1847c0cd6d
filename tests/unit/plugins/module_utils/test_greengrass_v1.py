"""Planning half of module_utils/_greengrass_v1: payloads, validation, normalization, ids, decisions.

Pure functions: no AWS endpoint involved (the modules' AWS behaviour is tested against the local
endpoint by tests/integration/targets/greengrass_v1_*).
"""

from __future__ import annotations

import copy

import pytest
from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v1 as gg

ACCOUNT = "123456789012"
THING_ARN = f"arn:aws:iot:us-east-1:{ACCOUNT}:thing/site-a-core"
CERT_ARN = f"arn:aws:iot:us-east-1:{ACCOUNT}:cert/{'ab' * 32}"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:detector:live"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/greengrass-detector"


def params(**overrides):
    """Options as AnsibleModule hands them over (unset suboptions present as None)."""
    base = {
        "name": "site-a",
        "state": "present",
        "role_arn": ROLE_ARN,
        "core": {"thing_arn": THING_ARN, "certificate_arn": CERT_ARN, "sync_shadow": True, "id": None},
        "resources": [
            {
                "name": "ssd-model",
                "id": None,
                "resource_data_container": {
                    "s3_machine_learning_model_resource_data": {
                        "s3_uri": "s3://detector-models/ssd.tar.gz",
                        "destination_path": "/greengrass-ml/model",
                        "owner_setting": None,
                    },
                    "local_device_resource_data": None,
                    "local_volume_resource_data": None,
                    "sage_maker_machine_learning_model_resource_data": None,
                },
            },
            {
                "name": "webcam",
                "id": "cam",
                "resource_data_container": {
                    "local_device_resource_data": {
                        "source_path": "/dev/video0",
                        "group_owner_setting": {"auto_add_group_owner": True, "group_owner": None},
                    }
                },
            },
        ],
        "functions": [
            {
                "function_arn": FUNCTION_ARN,
                "id": None,
                "pinned": True,
                "memory_size": 1048576,
                "timeout": 30,
                "encoding_type": None,
                "executable": None,
                "exec_args": None,
                "environment": {
                    "variables": {"MODEL_PATH": "/greengrass-ml/model"},
                    "access_sysfs": None,
                    "resource_access_policies": [
                        {"resource_id": "ssd-model", "permission": "ro"},
                        {"resource_id": "cam", "permission": "rw"},
                    ],
                    "execution": None,
                },
            }
        ],
        "default_config": {"execution": {"isolation_mode": "GreengrassContainer", "run_as": None}},
        "subscriptions": [
            {"id": None, "source": FUNCTION_ARN, "subject": "detections/site-a", "target": "cloud"},
            {"id": None, "source": "cloud", "subject": "detector/config/#", "target": FUNCTION_ARN},
        ],
        "loggers": [{"id": None, "component": "Lambda", "level": "INFO", "type": "FileSystem", "space": 1024}],
    }
    base.update(overrides)
    return base


def problems_of(options):
    with pytest.raises(gg.GreengrassInputError) as caught:
        gg.validate_group_params(options)
    return caught.value.problems


# ----------------------------------------------------------------------------- payloads


def test_payloads_match_the_create_definition_version_shapes():
    desired = gg.desired_definitions(params())
    assert desired["core"] == {
        "Cores": [{"Id": "site-a-core", "ThingArn": THING_ARN, "CertificateArn": CERT_ARN, "SyncShadow": True}]
    }
    model, camera = desired["resource"]["Resources"]
    assert model == {
        "Id": "ssd-model",
        "Name": "ssd-model",
        "ResourceDataContainer": {
            "S3MachineLearningModelResourceData": {
                "S3Uri": "s3://detector-models/ssd.tar.gz",
                "DestinationPath": "/greengrass-ml/model",
            }
        },
    }
    assert camera["Id"] == "cam"
    assert camera["ResourceDataContainer"] == {
        "LocalDeviceResourceData": {"SourcePath": "/dev/video0", "GroupOwnerSetting": {"AutoAddGroupOwner": True}}
    }
    (function,) = desired["function"]["Functions"]
    assert function["FunctionArn"] == FUNCTION_ARN
    assert function["FunctionConfiguration"] == {
        "Pinned": True,
        "MemorySize": 1048576,
        "Timeout": 30,
        "Environment": {
            "Variables": {"MODEL_PATH": "/greengrass-ml/model"},
            "ResourceAccessPolicies": [
                {"ResourceId": "ssd-model", "Permission": "ro"},
                {"ResourceId": "cam", "Permission": "rw"},
            ],
        },
    }
    assert desired["function"]["DefaultConfig"] == {"Execution": {"IsolationMode": "GreengrassContainer"}}
    assert [s["Target"] for s in desired["subscription"]["Subscriptions"]] == ["cloud", FUNCTION_ARN]
    assert desired["logger"]["Loggers"] == [
        {"Id": "Lambda-FileSystem", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": 1024}
    ]


def test_omitted_or_empty_kinds_have_no_definition():
    desired = gg.desired_definitions(params(functions=None, resources=[], subscriptions=None, loggers=[]))
    assert set(desired) == {"core"}


def test_run_as_uid_zero_is_kept():
    options = params(default_config={"execution": {"isolation_mode": "NoContainer", "run_as": {"uid": 0, "gid": 0}}})
    desired = gg.desired_definitions(options)
    assert desired["function"]["DefaultConfig"]["Execution"]["RunAs"] == {"Uid": 0, "Gid": 0}


# ----------------------------------------------------------------------------- ids


def test_derived_ids_are_stable_and_depend_only_on_identity():
    first = gg.desired_definitions(params())
    second = gg.desired_definitions(params())
    assert first == second
    changed_memory = params()
    changed_memory["functions"][0]["memory_size"] = 2048
    assert (
        gg.desired_definitions(changed_memory)["function"]["Functions"][0]["Id"]
        == first["function"]["Functions"][0]["Id"]
    )
    other_subject = params()
    other_subject["subscriptions"][0]["subject"] = "detections/site-b"
    ids = [s["Id"] for s in gg.desired_definitions(other_subject)["subscription"]["Subscriptions"]]
    assert ids[0] != first["subscription"]["Subscriptions"][0]["Id"]
    assert ids[1] == first["subscription"]["Subscriptions"][1]["Id"]
    for item_id in ids:
        assert gg.ID_RE.match(item_id)


def test_user_given_ids_win():
    options = params()
    options["subscriptions"][0]["id"] = "to-cloud"
    options["core"]["id"] = "the-core"
    desired = gg.desired_definitions(options)
    assert desired["subscription"]["Subscriptions"][0]["Id"] == "to-cloud"
    assert desired["core"]["Cores"][0]["Id"] == "the-core"


# ----------------------------------------------------------------------------- normalization


def test_order_and_api_defaults_do_not_count_as_changes():
    desired = gg.desired_definitions(params())
    as_read_back = copy.deepcopy(desired)
    as_read_back["subscription"]["Subscriptions"].reverse()
    as_read_back["resource"]["Resources"].reverse()
    configuration = as_read_back["function"]["Functions"][0]["FunctionConfiguration"]
    configuration["EncodingType"] = "json"
    configuration["Environment"]["AccessSysfs"] = False
    configuration["Environment"]["ResourceAccessPolicies"].reverse()
    for kind in desired:
        assert gg.definitions_equal(kind, desired[kind], as_read_back[kind]), kind
        assert gg.plan_definition(kind, desired[kind], {"content": as_read_back[kind]}) == "keep"


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("subscription", lambda d: d["Subscriptions"].append(dict(d["Subscriptions"][0], Id="extra"))),
        ("function", lambda d: d["Functions"][0]["FunctionConfiguration"].update(MemorySize=1)),
        ("function", lambda d: d["Functions"][0]["FunctionConfiguration"].update(EncodingType="binary")),
        ("function", lambda d: d.update(DefaultConfig={"Execution": {"IsolationMode": "NoContainer"}})),
        (
            "resource",
            lambda d: d["Resources"][1]["ResourceDataContainer"]["LocalDeviceResourceData"].pop("GroupOwnerSetting"),
        ),
        ("core", lambda d: d["Cores"][0].update(SyncShadow=False)),
        ("logger", lambda d: d["Loggers"][0].update(Level="DEBUG")),
    ],
)
def test_real_differences_make_a_new_version(kind, mutate):
    desired = gg.desired_definitions(params())[kind]
    current = copy.deepcopy(desired)
    mutate(current)
    assert not gg.definitions_equal(kind, desired, current)
    assert gg.plan_definition(kind, desired, {"content": current}) == "new_version"


def test_plan_without_owned_definition_creates_and_without_desire_is_unused():
    desired = gg.desired_definitions(params())
    assert gg.plan_definition("core", desired["core"], None) == "create"
    assert gg.plan_definition("logger", None, {"content": {}}) == "unused"


def test_group_definition_keeps_kinds_it_does_not_manage():
    current = {
        "CoreDefinitionVersionArn": "arn:core:old",
        "DeviceDefinitionVersionArn": "arn:devices:1",
        "SubscriptionDefinitionVersionArn": "arn:subs:1",
    }
    wanted = gg.desired_group_definition(
        current, {"core": "arn:core:new", "subscription": None, "function": "arn:fn:1"}
    )
    assert wanted == {
        "CoreDefinitionVersionArn": "arn:core:new",
        "DeviceDefinitionVersionArn": "arn:devices:1",
        "FunctionDefinitionVersionArn": "arn:fn:1",
    }


def test_arn_parsing():
    arn = f"arn:aws:greengrass:us-east-1:{ACCOUNT}:greengrass/definition/subscriptions/abc-1/versions/v-2"
    assert gg.definition_id_from_version_arn(arn) == ("abc-1", "v-2")
    assert gg.definition_id_from_version_arn(None) == (None, None)
    assert gg.version_id_from_arn(f"arn:aws:greengrass:us-east-1:{ACCOUNT}:greengrass/groups/g/versions/v9") == "v9"


def test_snake_content_keeps_environment_variable_names():
    content = {
        "Functions": [{"FunctionConfiguration": {"Environment": {"Variables": {"MODEL_PATH": "/m", "myVar": 1}}}}]
    }
    converted = gg.snake_content(content)
    assert converted["functions"][0]["function_configuration"]["environment"]["variables"] == {
        "MODEL_PATH": "/m",
        "myVar": 1,
    }


# ----------------------------------------------------------------------------- validation


def test_valid_options_pass():
    gg.validate_group_params(params())


def test_absent_needs_only_a_name():
    gg.validate_group_params({"name": "site-a", "state": "absent", "core": None, "role_arn": None})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p.update(name="  "), "name must not be empty"),
        (lambda p: p["core"].update(thing_arn="site-a-core"), "core.thing_arn must look like"),
        (lambda p: p["core"].update(thing_arn=f"arn:aws:iot:us-east-1:{ACCOUNT}:thinggroup/x"), "core.thing_arn"),
        (
            lambda p: p["core"].update(certificate_arn=f"arn:aws:iot:us-east-1:{ACCOUNT}:cert/abc"),
            "core.certificate_arn",
        ),
        (lambda p: p.update(role_arn="greengrass-role"), "role_arn must be an IAM role ARN"),
        (lambda p: p["subscriptions"][0].update(subject=""), "subscriptions[0].subject must be a non-empty MQTT topic"),
        (lambda p: p["subscriptions"][0].update(subject="a/#/b"), "subscriptions[0].subject 'a/#/b' is not a valid"),
        (lambda p: p["subscriptions"][1].update(subject="a/b+"), "subscriptions[1].subject"),
        (lambda p: p["subscriptions"][0].update(target="the-cloud"), "subscriptions[0].target must be 'cloud'"),
        (
            lambda p: p["subscriptions"][0].update(source=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:other:1"),
            "subscriptions[0].source",
        ),
        (lambda p: p["subscriptions"].append(dict(p["subscriptions"][0])), "subscriptions[2] has the same id"),
        (
            lambda p: p["functions"][0]["environment"]["resource_access_policies"][0].update(resource_id="nope"),
            "functions[0].environment.resource_access_policies[0].resource_id 'nope' is not the id of any entry",
        ),
        (
            lambda p: p["functions"][0]["environment"]["resource_access_policies"][1].update(permission="rwx"),
            "resource_access_policies[1].permission must be 'ro' or 'rw'",
        ),
        (
            lambda p: p["functions"][0].update(function_arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:detector"),
            "functions[0].function_arn must be a qualified Lambda ARN",
        ),
        (
            lambda p: p["functions"][0].update(
                function_arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:detector:$LATEST"
            ),
            "$LATEST is not allowed",
        ),
        (lambda p: p["functions"][0].update(memory_size=0), "functions[0].memory_size must be greater than 0"),
        (lambda p: p["functions"].append(dict(p["functions"][0])), "functions[1] has the same id"),
        (lambda p: p["resources"][1].update(id="ssd-model"), "resources[1] has the same id 'ssd-model'"),
        (lambda p: p["resources"][0].update(id="bad id!"), "resources[0].id (defaults to its name) 'bad id!'"),
        (
            lambda p: p["resources"][1]["resource_data_container"]["local_device_resource_data"].update(
                source_path="/tmp/x"
            ),
            "local_device_resource_data.source_path must be under /dev/",
        ),
        (
            lambda p: p["resources"][0]["resource_data_container"]["s3_machine_learning_model_resource_data"].update(
                s3_uri="https://bucket/model"
            ),
            "s3_uri must look like s3://<bucket>/<key>",
        ),
        (
            lambda p: p["resources"][0]["resource_data_container"]["s3_machine_learning_model_resource_data"].update(
                destination_path="relative/path"
            ),
            "destination_path must be an absolute path",
        ),
        (
            lambda p: p["resources"][0].update(resource_data_container={}),
            "resources[0].resource_data_container must set exactly one",
        ),
        (lambda p: p["loggers"][0].update(type="AWSCloudWatch"), "loggers[0].space applies only to type FileSystem"),
        (lambda p: p["loggers"].append(dict(p["loggers"][0])), "loggers[1] has the same id"),
        (
            lambda p: p.update(default_config={"execution": {"isolation_mode": None, "run_as": {"uid": -1, "gid": 0}}}),
            "default_config.execution.run_as.uid must be 0 or greater",
        ),
        (lambda p: p.update(core=None), "core is required"),
    ],
)
def test_bad_input_is_named(change, expected):
    options = params()
    change(options)
    problems = problems_of(options)
    assert any(expected in problem for problem in problems), problems


def test_every_problem_is_reported_at_once():
    options = params()
    options["core"]["thing_arn"] = "nope"
    options["subscriptions"][0]["subject"] = ""
    problems = problems_of(options)
    assert len(problems) == 2
    assert "core.thing_arn" in str(gg.GreengrassInputError(problems))


# ----------------------------------------------------------------------------- deployment decisions


def deployment(version, kind="NewDeployment", created="2026-11-25T10:00:00.000Z"):
    return {
        "DeploymentId": f"d-{version}-{created}",
        "DeploymentType": kind,
        "CreatedAt": created,
        "GroupArn": f"arn:aws:greengrass:us-east-1:{ACCOUNT}:greengrass/groups/g/versions/{version}",
    }


@pytest.mark.parametrize(
    ("latest", "status", "decision"),
    [
        (None, None, "deploy"),
        (deployment("v2"), "Success", "none"),
        (deployment("v2"), "InProgress", "wait"),
        (deployment("v2"), "Building", "wait"),
        (deployment("v2"), "Failure", "deploy"),
        (deployment("v1"), "Success", "deploy"),
        (deployment("v2", kind="Redeployment"), "Success", "none"),
        (deployment("v2", kind="ForceResetDeployment"), "Success", "deploy"),
    ],
)
def test_deployment_decision(latest, status, decision):
    assert gg.plan_deployment("v2", latest, status) == decision


def test_deployments_sort_newest_first():
    older = deployment("v1", created="2026-11-25T10:00:00.000Z")
    newer = deployment("v2", created="2026-11-25T10:00:01.500Z")
    assert gg.sort_deployments([older, newer]) == [newer, older]
    assert gg.deployment_version_id(newer) == "v2"
