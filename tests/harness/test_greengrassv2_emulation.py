"""The test bed's Greengrass V2 emulation answers boto3 as the service model says, and its controls work.

Every call goes through boto3, so botocore validates each request client-side. Every response is also
checked strictly against the operation's output shape (no member the model does not have, every required
member present, enums and types as modelled), which botocore's lenient parser alone would not catch.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import urllib.error
import urllib.request

import pytest
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

pytestmark = pytest.mark.aws

RECIPE = {
    "RecipeFormatVersion": "2020-01-25",
    "ComponentName": "com.example.Hello",
    "ComponentVersion": "1.0.0",
    "ComponentDescription": "says hello",
    "ComponentPublisher": "edgeml tests",
    "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": "echo hello"}}],
}


def _check_shape(shape, value, path):
    """Problems of a raw JSON value against a botocore shape (restJson: timestamps epoch, blobs base64)."""
    problems = []
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return ["%s: expected an object" % path]
        for name in value:
            if name not in shape.members:
                problems.append("%s.%s: not in the model" % (path, name))
        for name in shape.required_members:
            if name not in value:
                problems.append("%s.%s: required member missing" % (path, name))
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                problems.extend(_check_shape(member, value[name], "%s.%s" % (path, name)))
    elif kind == "list":
        if not isinstance(value, list):
            return ["%s: expected a list" % path]
        for i, item in enumerate(value):
            problems.extend(_check_shape(shape.member, item, "%s[%d]" % (path, i)))
    elif kind == "map":
        if not isinstance(value, dict):
            return ["%s: expected a map" % path]
        for key, item in value.items():
            problems.extend(_check_shape(shape.value, item, "%s[%s]" % (path, key)))
    elif kind == "string":
        if not isinstance(value, str):
            problems.append("%s: expected a string, got %r" % (path, value))
        elif shape.enum and value not in shape.enum:
            problems.append("%s: %r is not one of %s" % (path, value, shape.enum))
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append("%s: expected an integer" % path)
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append("%s: expected a boolean" % path)
    elif kind == "timestamp":
        if not isinstance(value, (int, float)):
            problems.append("%s: expected an epoch timestamp" % path)
    elif kind == "blob":
        try:
            base64.b64decode(value, validate=True)
        except (TypeError, ValueError):
            problems.append("%s: expected base64" % path)
    return problems


@pytest.fixture
def gg2(aws_client):
    """A greengrassv2 client whose every successful response is checked against its output shape."""
    client = aws_client("greengrassv2")
    checked = []

    def check(operation_model, response_dict, **_):
        if response_dict["status_code"] >= 300 or operation_model.output_shape is None:
            return
        body = json.loads(response_dict["body"] or b"{}")
        problems = _check_shape(operation_model.output_shape, body, operation_model.name)
        assert not problems, problems
        checked.append(operation_model.name)

    client.meta.events.register("before-parse.greengrassv2.*", check)
    client.checked_operations = checked
    return client


def _control(endpoint, name, body):
    request = urllib.request.Request(  # noqa: S310 - loopback test endpoint
        "%s/moto-api/static/greengrassv2/%s" % (endpoint.url, name),
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback test endpoint
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def _group_with_things(iot, group, things):
    arn = iot.create_thing_group(thingGroupName=group)["thingGroupArn"]
    for thing in things:
        iot.create_thing(thingName=thing)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    return arn


def test_component_round_trip_and_conflict(clean_aws, gg2):
    created = gg2.create_component_version(inlineRecipe=json.dumps(RECIPE).encode())
    assert created["arn"].endswith(":components:com.example.Hello:versions:1.0.0")
    assert created["status"]["componentState"] == "DEPLOYABLE"

    described = gg2.describe_component(arn=created["arn"])
    assert (described["componentName"], described["componentVersion"]) == ("com.example.Hello", "1.0.0")
    assert described["publisher"] == "edgeml tests" and described["description"] == "says hello"
    assert json.loads(gg2.get_component(arn=created["arn"])["recipe"]) == RECIPE
    assert yaml.safe_load(gg2.get_component(arn=created["arn"], recipeOutputFormat="YAML")["recipe"]) == RECIPE

    # The same name and version again - as YAML this time - is refused as AWS does.
    with pytest.raises(ClientError) as excinfo:
        gg2.create_component_version(inlineRecipe=yaml.safe_dump(dict(RECIPE, ComponentDescription="x")).encode())
    assert _error_code(excinfo) == "ConflictException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409

    for version in ("1.10.0", "1.2.0", "1.2.0-rc.1"):
        gg2.create_component_version(inlineRecipe=json.dumps(dict(RECIPE, ComponentVersion=version)).encode())
    component_arn = created["arn"].rsplit(":versions:", 1)[0]
    versions = [v["componentVersion"] for v in gg2.list_component_versions(arn=component_arn)["componentVersions"]]
    assert versions == ["1.10.0", "1.2.0", "1.2.0-rc.1", "1.0.0"]  # semantic order, newest first
    listed = gg2.list_components()["components"]
    assert [(c["componentName"], c["latestVersion"]["componentVersion"]) for c in listed] == [
        ("com.example.Hello", "1.10.0")
    ]

    paged = gg2.get_paginator("list_component_versions").paginate(arn=component_arn, PaginationConfig={"PageSize": 3})
    assert [len(page["componentVersions"]) for page in paged] == [3, 1]

    gg2.delete_component(arn=created["arn"])
    with pytest.raises(ClientError) as excinfo:
        gg2.describe_component(arn=created["arn"])
    assert _error_code(excinfo) == "ResourceNotFoundException"
    assert {"CreateComponentVersion", "DescribeComponent", "GetComponent", "ListComponents"} <= set(
        gg2.checked_operations
    )


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({k: v for k, v in RECIPE.items() if k != "ComponentName"}, "ComponentName"),
        (dict(RECIPE, ComponentVersion="1.0"), "semantic version"),
        ("just text", "object"),
    ],
    ids=["no-name", "bad-version", "not-a-mapping"],
)
def test_invalid_recipes_are_refused(clean_aws, gg2, recipe, message):
    with pytest.raises(ClientError) as excinfo:
        gg2.create_component_version(inlineRecipe=(json.dumps(recipe) if isinstance(recipe, dict) else recipe).encode())
    assert _error_code(excinfo) == "ValidationException"
    assert message in excinfo.value.response["Error"]["Message"]
    assert gg2.list_components()["components"] == []


def test_artifacts_get_digests_and_missing_ones_fail(clean_aws, gg2, aws_client):
    s3 = aws_client("s3")
    s3.create_bucket(Bucket="artifacts")
    s3.put_object(Bucket="artifacts", Key="hello.py", Body=b"print('hello')\n")
    manifest = {"Platform": {"os": "linux"}, "Artifacts": [{"URI": "s3://artifacts/hello.py"}]}
    ok = gg2.create_component_version(inlineRecipe=json.dumps(dict(RECIPE, Manifests=[manifest])).encode())
    stored = json.loads(gg2.get_component(arn=ok["arn"])["recipe"])
    artifact = stored["Manifests"][0]["Artifacts"][0]
    assert artifact["Algorithm"] == "SHA-256"
    assert artifact["Digest"] == base64.b64encode(hashlib.sha256(b"print('hello')\n").digest()).decode()

    missing = {"Platform": {"os": "linux"}, "Artifacts": [{"URI": "s3://artifacts/nope.py"}]}
    bad = gg2.create_component_version(
        inlineRecipe=json.dumps(dict(RECIPE, ComponentVersion="2.0.0", Manifests=[missing])).encode()
    )
    assert bad["status"]["componentState"] == "FAILED"
    assert "s3://artifacts/nope.py" in bad["status"]["errors"]

    iot = aws_client("iot")
    group_arn = _group_with_things(iot, "g", [])
    with pytest.raises(ClientError) as excinfo:
        gg2.create_deployment(targetArn=group_arn, components={"com.example.Hello": {"componentVersion": "2.0.0"}})
    assert _error_code(excinfo) == "ValidationException"


def test_deployment_lifecycle(clean_aws, gg2, aws_client):
    gg2.create_component_version(inlineRecipe=json.dumps(RECIPE).encode())
    iot = aws_client("iot")
    group_arn = _group_with_things(iot, "detectors", ["core-1"])
    spec = {"com.example.Hello": {"componentVersion": "1.0.0", "configurationUpdate": {"merge": '{"a": 1}'}}}

    with pytest.raises(ClientError) as excinfo:
        gg2.create_deployment(targetArn=group_arn.replace("detectors", "nope"), components=spec)
    assert _error_code(excinfo) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        gg2.create_deployment(targetArn=group_arn, components={"com.example.Other": {"componentVersion": "1.0.0"}})
    assert _error_code(excinfo) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        bad_merge = {"com.example.Hello": {"componentVersion": "1.0.0", "configurationUpdate": {"merge": "{"}}}
        gg2.create_deployment(targetArn=group_arn, components=bad_merge)
    assert _error_code(excinfo) == "ValidationException"
    assert gg2.list_deployments()["deployments"] == []

    policies = {
        "failureHandlingPolicy": "ROLLBACK",
        "componentUpdatePolicy": {"timeoutInSeconds": 120, "action": "SKIP_NOTIFY_COMPONENTS"},
    }
    job = {
        "jobExecutionsRolloutConfig": {"maximumPerMinute": 5},
        "abortConfig": {
            "criteriaList": [
                {"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 10, "minNumberOfExecutedThings": 2}
            ]
        },
        "timeoutConfig": {"inProgressTimeoutInMinutes": 30},
    }
    first = gg2.create_deployment(
        targetArn=group_arn,
        deploymentName="one",
        components=spec,
        deploymentPolicies=policies,
        iotJobConfiguration=job,
    )
    got = gg2.get_deployment(deploymentId=first["deploymentId"])
    assert got["components"] == spec and got["deploymentPolicies"] == policies and got["iotJobConfiguration"] == job
    assert (got["deploymentStatus"], got["isLatestForTarget"], got["revisionId"]) == ("ACTIVE", True, "1")

    second = gg2.create_deployment(targetArn=group_arn, deploymentName="two", components=spec)
    assert gg2.get_deployment(deploymentId=first["deploymentId"])["deploymentStatus"] == "INACTIVE"
    latest = gg2.list_deployments(targetArn=group_arn, historyFilter="LATEST_ONLY")["deployments"]
    assert [(d["deploymentId"], d["revisionId"]) for d in latest] == [(second["deploymentId"], "2")]
    assert len(gg2.list_deployments(targetArn=group_arn, historyFilter="ALL")["deployments"]) == 2

    with pytest.raises(ClientError) as excinfo:
        gg2.delete_deployment(deploymentId=second["deploymentId"])
    assert _error_code(excinfo) == "ConflictException"  # an active deployment is canceled first
    gg2.cancel_deployment(deploymentId=second["deploymentId"])
    assert gg2.get_deployment(deploymentId=second["deploymentId"])["deploymentStatus"] == "CANCELED"
    with pytest.raises(ClientError) as excinfo:
        gg2.cancel_deployment(deploymentId=second["deploymentId"])
    assert _error_code(excinfo) == "ConflictException"
    for deployment in (first, second):
        gg2.delete_deployment(deploymentId=deployment["deploymentId"])
    assert gg2.list_deployments(historyFilter="ALL")["deployments"] == []
    assert {"CreateDeployment", "GetDeployment", "ListDeployments", "CancelDeployment"} <= set(gg2.checked_operations)


def test_core_devices_and_the_device_status_control(clean_aws, gg2, aws_client):
    gg2.create_component_version(inlineRecipe=json.dumps(RECIPE).encode())
    iot = aws_client("iot")
    group_arn = _group_with_things(iot, "detectors", ["core-1", "core-2"])
    iot.create_thing(thingName="elsewhere")

    assert _control(clean_aws, "core-device", {"thing_name": "no-such-thing"}) == 400
    assert _control(clean_aws, "deployment-report", {"thing_name": "core-1", "status": "SUCCEEDED"}) == 404
    for thing in ("core-1", "core-2", "elsewhere"):
        assert _control(clean_aws, "core-device", {"thing_name": thing, "architecture": "aarch64"}) == 201
    in_group = gg2.list_core_devices(thingGroupArn=group_arn)["coreDevices"]
    assert [d["coreDeviceThingName"] for d in in_group] == ["core-1", "core-2"]
    assert gg2.get_core_device(coreDeviceThingName="core-1")["architecture"] == "aarch64"
    with pytest.raises(ClientError) as excinfo:
        gg2.get_core_device(coreDeviceThingName="core-9")
    assert _error_code(excinfo) == "ResourceNotFoundException"

    spec = {"com.example.Hello": {"componentVersion": "1.0.0"}}
    first = gg2.create_deployment(targetArn=group_arn, components=spec)["deploymentId"]

    def status(thing, deployment_id):
        effective = gg2.list_effective_deployments(coreDeviceThingName=thing)["effectiveDeployments"]
        return {e["deploymentId"]: e for e in effective}[deployment_id]

    assert status("core-1", first)["coreDeviceExecutionStatus"] == "QUEUED"  # nothing reported yet
    assert gg2.list_effective_deployments(coreDeviceThingName="elsewhere")["effectiveDeployments"] == []

    # A report for one deployment, then a standing report for whatever the device gets.
    report = {"thing_name": "core-1", "deployment_id": first, "status": "FAILED", "reason": "broken"}
    assert _control(clean_aws, "deployment-report", dict(report, error_stack=["DEPLOYMENT_FAILURE"])) == 201
    assert _control(clean_aws, "deployment-report", {"thing_name": "core-2", "status": "SUCCEEDED"}) == 201
    failed = status("core-1", first)
    assert (failed["coreDeviceExecutionStatus"], failed["reason"]) == ("FAILED", "broken")
    assert failed["statusDetails"]["errorStack"] == ["DEPLOYMENT_FAILURE"]
    assert status("core-2", first)["coreDeviceExecutionStatus"] == "SUCCEEDED"

    # A final status stays put; a deployment superseded before the device finished reads CANCELED.
    assert _control(clean_aws, "deployment-report", {"thing_name": "core-2", "status": "IN_PROGRESS"}) == 201
    assert status("core-2", first)["coreDeviceExecutionStatus"] == "SUCCEEDED"
    second = gg2.create_deployment(targetArn=group_arn, components=spec)["deploymentId"]
    assert status("core-2", second)["coreDeviceExecutionStatus"] == "IN_PROGRESS"
    gg2.create_deployment(targetArn=group_arn, components=spec)
    assert status("core-2", second)["coreDeviceExecutionStatus"] == "CANCELED"

    assert _control(clean_aws, "deployment-report", {"thing_name": "core-1", "status": "BOGUS"}) == 400
    assert _control(clean_aws, "core-device", {"thing_name": "core-1", "status": "UNHEALTHY"}) == 201
    assert [d["coreDeviceThingName"] for d in gg2.list_core_devices(status="UNHEALTHY")["coreDevices"]] == ["core-1"]
    assert {"ListCoreDevices", "GetCoreDevice", "ListEffectiveDeployments"} <= set(gg2.checked_operations)

    clean_aws.reset()
    assert gg2.list_core_devices()["coreDevices"] == []
    assert gg2.list_deployments(historyFilter="ALL")["deployments"] == []


def test_timestamps_are_recent(clean_aws, gg2):
    created = gg2.create_component_version(inlineRecipe=json.dumps(RECIPE).encode())
    age = datetime.datetime.now(datetime.UTC) - created["creationTimestamp"]
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=1)


def test_client_tokens_make_creates_idempotent(clean_aws, gg2, aws_client):
    """clientToken (V2 model): a repeat with a successful create's token gets that create's answer and creates
    nothing; without a token, or with another one, a repeat is a new request; the same token with other request
    members is refused (the bed's choice where the model is silent)."""
    recipe = json.dumps(RECIPE).encode()
    first = gg2.create_component_version(inlineRecipe=recipe, clientToken="component-1")
    again = gg2.create_component_version(inlineRecipe=recipe, clientToken="component-1")
    assert again["arn"] == first["arn"] and again["creationTimestamp"] == first["creationTimestamp"]
    with pytest.raises(ClientError) as new_token:
        gg2.create_component_version(inlineRecipe=recipe, clientToken="component-2")
    assert _error_code(new_token) == "ConflictException"  # a new request for an existing version
    other = json.dumps(dict(RECIPE, ComponentVersion="1.0.1")).encode()
    with pytest.raises(ClientError) as mismatch:
        gg2.create_component_version(inlineRecipe=other, clientToken="component-1")
    assert _error_code(mismatch) == "ConflictException"

    target = _group_with_things(aws_client("iot"), "token-fleet", ["token-1"])
    request = {"targetArn": target, "components": {"com.example.Hello": {"componentVersion": "1.0.0"}}}
    deployment = gg2.create_deployment(clientToken="deployment-1", **request)
    repeated = gg2.create_deployment(clientToken="deployment-1", **request)
    assert (repeated["deploymentId"], repeated["iotJobId"]) == (deployment["deploymentId"], deployment["iotJobId"])
    assert len(gg2.list_deployments(targetArn=target, historyFilter="ALL")["deployments"]) == 1
    assert gg2.create_deployment(**request)["deploymentId"] != deployment["deploymentId"]
    assert len(gg2.list_deployments(targetArn=target, historyFilter="ALL")["deployments"]) == 2


def test_greengrass_v1_deployment_is_idempotent_for_its_client_token(clean_aws, aws_client):
    """V1 model: "CreateDeployment requests are idempotent with respect to the X-Amzn-Client-Token token and the
    request parameters"."""
    iot, v1 = aws_client("iot"), aws_client("greengrass")
    thing = iot.create_thing(thingName="token-core")
    certificate = iot.create_keys_and_certificate(setAsActive=True)
    core = {"Cores": [{"Id": "core", "ThingArn": thing["thingArn"], "CertificateArn": certificate["certificateArn"]}]}
    core_version = v1.create_core_definition(Name="token-core", InitialVersion=core)["LatestVersionArn"]
    group = v1.create_group(Name="token-group", InitialVersion={"CoreDefinitionVersionArn": core_version})
    deploy = {"GroupId": group["Id"], "GroupVersionId": group["LatestVersion"], "DeploymentType": "NewDeployment"}

    first = v1.create_deployment(AmznClientToken="deploy-1", **deploy)["DeploymentId"]
    assert v1.create_deployment(AmznClientToken="deploy-1", **deploy)["DeploymentId"] == first
    assert v1.create_deployment(AmznClientToken="deploy-2", **deploy)["DeploymentId"] != first
    assert v1.create_deployment(**deploy)["DeploymentId"] != first
    assert len(v1.list_deployments(GroupId=group["Id"])["Deployments"]) == 3


def test_greengrass_v1_still_answers_beside_v2(clean_aws, gg2, aws_client):
    v1 = aws_client("greengrass")
    group = v1.create_group(Name="v1-group")
    gg2.create_component_version(inlineRecipe=json.dumps(RECIPE).encode())
    assert [g["Name"] for g in v1.list_groups()["Groups"]] == ["v1-group"]
    assert v1.get_group(GroupId=group["Id"])["Name"] == "v1-group"
    assert len(gg2.list_components()["components"]) == 1


def test_the_shape_check_catches_what_the_parser_would_let_through(gg2):
    output = gg2.meta.service_model.operation_model("GetCoreDevice").output_shape
    assert _check_shape(output, {"coreDeviceThingName": "a", "status": "HEALTHY"}, "GetCoreDevice") == []
    problems = _check_shape(output, {"coreDeviceThingName": 1, "status": "FINE", "extra": True}, "GetCoreDevice")
    assert sorted(problems) == [
        "GetCoreDevice.coreDeviceThingName: expected a string, got 1",
        "GetCoreDevice.extra: not in the model",
        "GetCoreDevice.status: 'FINE' is not one of ['HEALTHY', 'UNHEALTHY']",
    ]
    required = gg2.meta.service_model.operation_model("CreateComponentVersion").output_shape
    no_status = {"componentName": "a", "componentVersion": "1.0.0", "creationTimestamp": 1.0}
    assert "Op.status: required member missing" in _check_shape(required, no_status, "Op")


def _signed(endpoint, method, path, body=None):
    """A request signed like boto3's but sent without botocore's client-side validation: (status, JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    aws_request = AWSRequest(
        method=method, url=endpoint.url + path, data=data, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials("testing", "testing"), "greengrass", "us-east-1").add_auth(aws_request)
    request = urllib.request.Request(  # noqa: S310 - loopback test endpoint
        aws_request.url, data=data, method=method, headers=dict(aws_request.headers.items())
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("POST", "/greengrass/v2/deployments", {"components": {}}, "Missing required parameter"),
        (
            "POST",
            "/greengrass/v2/deployments",
            {"targetArn": "arn:aws:iot:us-east-1:1:thinggroup/g", "bogus": 1},
            "Unknown parameter",
        ),
        ("POST", "/greengrass/v2/createComponentVersion", {"inlineRecipe": 5}, "Invalid type"),
        ("GET", "/greengrass/v2/deployments?maxResults=500", None, "valid range"),
    ],
    ids=["missing-member", "unknown-member", "wrong-type", "out-of-range"],
)
def test_requests_are_validated_against_the_model_server_side(clean_aws, method, path, body, expected):
    status, answer, headers = _signed(clean_aws, method, path, body)
    assert status == 400
    assert headers.get("x-amzn-ErrorType") == "ValidationException"
    assert expected in answer["message"]


def test_a_valid_raw_request_is_served(clean_aws):
    status, answer, _ = _signed(clean_aws, "GET", "/greengrass/v2/deployments?maxResults=5&historyFilter=ALL")
    assert (status, answer) == (200, {"deployments": []})
