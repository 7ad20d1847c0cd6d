"""The stand-in nucleus's recipe rules (testbed/standins/greengrass_v2_nucleus/agent/recipes.py), on the controller.

Each case is one rule of the Greengrass V2 developer guide the stand-in follows, or one thing it must refuse by
name instead of half-doing; the SigV4 signature of the artifact downloads is checked against botocore's signer.
"""

from __future__ import annotations

import base64
import datetime
import hashlib

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

from testbed.standins.greengrass_v2_nucleus.agent import recipes
from testbed.standins.greengrass_v2_nucleus.agent.recipes import RecipeError, Unsupported

DETECTOR_RECIPE = {
    "RecipeFormatVersion": "2020-01-25",
    "ComponentName": "com.edgeml.ObjectDetector",
    "ComponentVersion": "1.0.2",
    "ComponentDependencies": {"com.edgeml.SsdModel": {"VersionRequirement": "=1.0.1", "DependencyType": "HARD"}},
    "ComponentConfiguration": {"DefaultConfiguration": {"threshold": 0.5, "labels": {"first": "blue_box"}}},
    "Manifests": [
        {"Platform": {"os": "windows"}, "Lifecycle": {"Run": "windows.exe"}},
        {
            "Platform": {"os": "linux"},
            "Artifacts": [{"URI": "s3://bucket/code.zip", "Unarchive": "ZIP"}],
            "Lifecycle": {
                "Setenv": {"CODE": "{artifacts:decompressedPath}/code"},
                "Install": {"Script": "tar -xzf {com.edgeml.SsdModel:artifacts:path}/model.tar.gz", "Timeout": 300},
                "Run": "exec python {artifacts:path}/main.py --thing {iot:thingName}",
            },
        },
    ],
}
LINUX = {"os": "linux", "architecture": "amd64"}


def paths_for(*names: str) -> dict:
    return {
        name: {
            "artifacts:path": f"/gg/packages/artifacts/{name}/1",
            "artifacts:decompressedPath": f"/gg/packages/artifacts-unarchived/{name}/1",
            "work:path": f"/gg/work/{name}",
            "configuration": {"threshold": 0.5, "labels": {"first": "blue_box"}, "a/b": "slash"},
        }
        for name in names
    }


KERNEL = {"kernel:rootPath": "/gg", "iot:thingName": "edge-01"}


def test_the_first_manifest_for_the_platform_is_chosen_and_its_lifecycle_read():
    manifest = recipes.select_manifest(DETECTOR_RECIPE, LINUX)
    assert manifest["Platform"] == {"os": "linux"}
    steps = recipes.lifecycle_of(manifest, "com.edgeml.ObjectDetector")
    assert steps["Install"]["Timeout"] == 300
    assert steps["Run"] == {"Script": "exec python {artifacts:path}/main.py --thing {iot:thingName}", "Timeout": None}
    assert steps["Setenv"] == {"CODE": "{artifacts:decompressedPath}/code"}
    # component-recipe-reference.md: Shutdown's default timeout is 15 s, Install's 120 s.
    default = recipes.lifecycle_of({"Lifecycle": {"Install": "x", "Shutdown": "y"}}, "c")
    assert (default["Install"]["Timeout"], default["Shutdown"]["Timeout"]) == (120, 15)


def test_no_manifest_for_the_platform_is_a_recipe_error_naming_the_platform():
    with pytest.raises(RecipeError, match="no manifest for the platform.*darwin"):
        recipes.select_manifest(DETECTOR_RECIPE, {"os": "darwin", "architecture": "arm64"})


@pytest.mark.parametrize(
    ("recipe_part", "named"),
    [
        ({"Lifecycle": {"Startup": "x"}}, "Startup"),
        ({"Lifecycle": {"Bootstrap": {"Script": "x"}}}, "Bootstrap"),
        ({"Lifecycle": {"Install": {"Script": "x", "SkipIf": "onpath x"}}}, "SkipIf"),
        ({"Lifecycle": {"Run": {"Script": "x", "Timeout": 5}}}, "Run.Timeout"),
    ],
)
def test_lifecycle_parts_the_stand_in_does_not_run_are_refused_by_name(recipe_part, named):
    with pytest.raises(Unsupported, match=named):
        recipes.lifecycle_of(recipe_part, "c")


def test_other_unimplemented_recipe_parts_are_refused_by_name():
    with pytest.raises(Unsupported, match="ComponentType aws.greengrass.lambda"):
        recipes.check_recipe({"ComponentType": "aws.greengrass.lambda"})
    with pytest.raises(Unsupported, match="Lifecycle"):
        recipes.check_recipe({"Lifecycle": {}})  # the global lifecycle with Selections
    with pytest.raises(Unsupported, match="platform attribute.*runtime"):
        recipes.select_manifest({"Manifests": [{"Platform": {"os": "linux", "runtime": "x"}}]}, LINUX)
    with pytest.raises(Unsupported, match="https://"):
        recipes.check_artifact({"URI": "https://example.com/a.zip"}, "c")
    with pytest.raises(RecipeError, match="ZIP only"):
        recipes.check_artifact({"URI": "s3://b/a.tar.gz", "Unarchive": "TAR"}, "c")


def test_recipe_variables_are_interpolated_for_the_component_and_its_dependencies():
    paths = paths_for("com.edgeml.ObjectDetector", "com.edgeml.SsdModel")
    dependencies = {"com.edgeml.SsdModel"}
    text = (
        "{artifacts:path} {artifacts:decompressedPath} {work:path} {kernel:rootPath} {iot:thingName} "
        "{configuration:/threshold} {configuration:/labels} {configuration:/labels/first} {configuration:/a~1b} "
        "{configuration:/missing} {com.edgeml.SsdModel:artifacts:path} ${SHELL_VARIABLE} {a,b}"
    )
    assert recipes.interpolate(text, "com.edgeml.ObjectDetector", paths, KERNEL, dependencies).split(" ") == [
        "/gg/packages/artifacts/com.edgeml.ObjectDetector/1",
        "/gg/packages/artifacts-unarchived/com.edgeml.ObjectDetector/1",
        "/gg/work/com.edgeml.ObjectDetector",
        "/gg",
        "edge-01",
        "0.5",
        '{"first":',
        '"blue_box"}',
        "blue_box",
        "slash",
        "",
        "/gg/packages/artifacts/com.edgeml.SsdModel/1",
        "${SHELL_VARIABLE}",  # not a recipe variable: left to the shell
        "{a,b}",
    ]


def test_variables_the_stand_in_cannot_resolve_fail_naming_them():
    paths = paths_for("own", "other")
    with pytest.raises(RecipeError, match="other is not a dependency of own"):
        recipes.interpolate("{other:artifacts:path}", "own", paths, KERNEL, set())
    with pytest.raises(Unsupported, match=r"\{iot:thingArn\}"):
        recipes.interpolate("{iot:thingArn}", "own", paths, KERNEL, set())
    with pytest.raises(Unsupported, match=r"\{work:other\}"):
        recipes.interpolate("{work:other}", "own", paths, KERNEL, set())
    with pytest.raises(RecipeError, match="JSON pointer"):
        recipes.interpolate("{configuration:threshold}", "own", paths, KERNEL, set())


@pytest.mark.parametrize(
    ("version", "requirement", "expected"),
    [
        ("1.0.1", "=1.0.1", True),
        ("1.0.2", "=1.0.1", False),
        ("1.4.0", ">=1.0.0 <2.0.0", True),
        ("2.0.0", ">=1.0.0 <2.0.0", False),
        ("1.9.9", "^1.2.0", True),
        ("2.0.0", "^1.2.0", False),
        ("0.3.9", "^0.3.1", True),
        ("0.4.0", "^0.3.1", False),
        ("1.2.9", "~1.2.3", True),
        ("1.3.0", "~1.2.3", False),
    ],
)
def test_version_requirements(version, requirement, expected):
    assert recipes.satisfies(version, requirement) is expected


def test_dependencies_must_be_in_the_deployment_at_a_matching_version_and_come_first():
    model = {"ComponentName": "com.edgeml.SsdModel", "ComponentVersion": "1.0.1"}
    assert recipes.dependency_order({"com.edgeml.ObjectDetector": DETECTOR_RECIPE, "com.edgeml.SsdModel": model}) == [
        "com.edgeml.SsdModel",
        "com.edgeml.ObjectDetector",
    ]
    recipes.check_dependencies({"com.edgeml.ObjectDetector": DETECTOR_RECIPE, "com.edgeml.SsdModel": model})
    with pytest.raises(RecipeError, match="1.0.0 does not meet com.edgeml.ObjectDetector's requirement =1.0.1"):
        recipes.check_dependencies(
            {"com.edgeml.ObjectDetector": DETECTOR_RECIPE, "com.edgeml.SsdModel": dict(model, ComponentVersion="1.0.0")}
        )
    with pytest.raises(Unsupported, match="dependency com.edgeml.SsdModel .* not in the deployment"):
        recipes.check_dependencies({"com.edgeml.ObjectDetector": DETECTOR_RECIPE})
    cycle = {"a": {"ComponentDependencies": {"b": {}}}, "b": {"ComponentDependencies": {"a": {}}}}
    with pytest.raises(RecipeError, match="cycle"):
        recipes.dependency_order(cycle)


def test_artifact_digest_and_permissions():
    content = b"artifact bytes"
    digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
    recipes.verify_digest({"URI": "s3://b/k", "Digest": digest, "Algorithm": "SHA-256"}, content)
    with pytest.raises(RecipeError, match="SHA-256 digest"):
        recipes.verify_digest({"URI": "s3://b/k", "Digest": digest, "Algorithm": "SHA-256"}, content + b"!")
    # component-recipe-reference.md, Permission: Read OWNER and Execute NONE by default.
    assert recipes.permission_mode({}) == 0o400
    assert recipes.permission_mode({"Permission": {"Read": "ALL", "Execute": "OWNER"}}) == 0o544
    assert recipes.permission_mode({"Permission": {"Read": "ALL", "Execute": "ALL"}}) == 0o555
    with pytest.raises(RecipeError, match="Permission.Read"):
        recipes.permission_mode({"Permission": {"Read": "GROUP"}})


def test_configuration_updates_reset_then_merge():
    default = {"threshold": 0.5, "labels": {"first": "blue_box", "second": "yellow_box"}}
    merged = recipes.merge_configuration(default, {"merge": '{"labels": {"first": "red_box"}, "extra": 1}'})
    assert merged == {"threshold": 0.5, "labels": {"first": "red_box", "second": "yellow_box"}, "extra": 1}
    assert recipes.merge_configuration(default, {"reset": [""], "merge": {"threshold": 0.7}})["threshold"] == 0.7
    with pytest.raises(Unsupported, match="reset of /labels"):
        recipes.merge_configuration(default, {"reset": ["/labels"]})


@pytest.mark.parametrize(
    ("resources", "operation", "topic", "allowed"),
    [
        (["blog/infer/input", "blog/infer/output"], "aws.greengrass#PublishToIoTCore", "blog/infer/output", True),
        (["blog/infer/input", "blog/infer/output"], "aws.greengrass#PublishToIoTCore", "blog/infer/other", False),
        (["blog/infer/input"], "aws.greengrass#SubscribeToIoTCore", "blog/infer/input", True),
        (["blog/#"], "aws.greengrass#PublishToIoTCore", "blog/infer/output", True),
        (["blog/+/output"], "aws.greengrass#PublishToIoTCore", "blog/infer/output", True),
        (["blog/+/output"], "aws.greengrass#PublishToIoTCore", "blog/a/b/output", False),
        (["my/iot/*/telemetry"], "aws.greengrass#PublishToIoTCore", "my/iot/dev1/telemetry", True),
        (["*"], "aws.greengrass#PublishToIoTCore", "anything/at/all", True),
    ],
)
def test_ipc_access_control_for_the_mqtt_proxy(resources, operation, topic, allowed):
    access_control = {
        "aws.greengrass.ipc.mqttproxy": {
            "c:mqttproxy:1": {"operations": ["aws.greengrass#PublishToIoTCore", operation], "resources": resources}
        }
    }
    assert recipes.ipc_allowed(access_control, operation, topic)[0] is allowed


def test_ipc_access_control_denies_by_default_and_per_operation():
    only_publish = {
        "aws.greengrass.ipc.mqttproxy": {
            "c:1": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["blog/infer/input"]}
        }
    }
    allowed, reason = recipes.ipc_allowed(only_publish, "aws.greengrass#SubscribeToIoTCore", "blog/infer/input")
    assert not allowed and "SubscribeToIoTCore on blog/infer/input" in reason
    assert not recipes.ipc_allowed({}, "aws.greengrass#PublishToIoTCore", "t")[0]
    # Another IPC service's policy grants nothing for the MQTT proxy.
    pubsub = {"aws.greengrass.ipc.pubsub": {"c:1": {"operations": ["*"], "resources": ["*"]}}}
    assert not recipes.ipc_allowed(pubsub, "aws.greengrass#PublishToIoTCore", "t")[0]


def test_sigv4_signature_is_the_one_botocore_makes():
    credentials = {"accessKeyId": "ASIAEXAMPLE", "secretAccessKey": "secret/key+1", "sessionToken": "token=="}
    url = recipes.s3_object_url("http://127.0.0.1:5000/", "s3://edgeml-demo-models/greengrass/x.y/abc def/code+1.zip")
    assert url == "http://127.0.0.1:5000/edgeml-demo-models/greengrass/x.y/abc%20def/code%2B1.zip"

    request = botocore.awsrequest.AWSRequest(method="GET", url=url, data=b"")
    request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(b"").hexdigest()
    signer = botocore.auth.S3SigV4Auth(
        botocore.credentials.Credentials("ASIAEXAMPLE", "secret/key+1", "token=="), "s3", "us-east-1"
    )
    signer.add_auth(request)
    # botocore signs with the current time: sign ours at the time it wrote.
    when = datetime.datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    ours = recipes.sigv4_headers("GET", url, credentials, "us-east-1", now=when.replace(tzinfo=datetime.timezone.utc))
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["x-amz-security-token"] == "token=="
