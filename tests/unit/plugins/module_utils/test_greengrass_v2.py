"""Planning half of module_utils/_greengrass_v2: recipes, content hashes, versions, deployment requests and
the comparison that decides whether a new deployment is needed.

Pure functions: no AWS endpoint involved (the modules' AWS behaviour is tested against the local endpoint's
Greengrass V2 emulation by tests/integration/targets/greengrass_v2_*).
"""

from __future__ import annotations

import datetime
import json

import pytest
from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v2 as gg2

RECIPE = {
    "RecipeFormatVersion": "2020-01-25",
    "ComponentName": "com.edgeml.Detector",
    "ComponentVersion": "1.0.0",
    "Manifests": [{"Platform": {"os": "linux"}, "Artifacts": [{"URI": "s3://bucket-a/detector.zip"}]}],
}
GROUP_ARN = "arn:aws:iot:us-east-1:123456789012:thinggroup/detectors"


# ---------------------------------------------------------------- recipes


def test_recipe_text_json_yaml_and_dict_parse_alike():
    as_yaml = (
        "RecipeFormatVersion: 2020-01-25\n"  # unquoted: YAML reads a date, the recipe wants the text
        "ComponentName: com.edgeml.Detector\n"
        "ComponentVersion: 1.0.0\n"
        "Manifests:\n- Platform: {os: linux}\n  Artifacts: [{URI: 's3://bucket-a/detector.zip'}]\n"
    )
    assert gg2.parse_recipe(as_yaml) == RECIPE
    assert gg2.parse_recipe(json.dumps(RECIPE)) == RECIPE
    assert gg2.parse_recipe(dict(RECIPE, RecipeFormatVersion=datetime.date(2020, 1, 25))) == RECIPE


@pytest.mark.parametrize(
    ("recipe", "message"),
    [("", "dict or JSON/YAML text"), ("[1, 2]", "must be a mapping"), ("a: [b", "neither valid JSON nor YAML")],
)
def test_unreadable_recipes_are_named(recipe, message):
    with pytest.raises(gg2.GreengrassV2InputError, match=message.replace("/", ".")):
        gg2.parse_recipe(recipe)


def test_parse_does_not_alias_the_callers_recipe():
    parsed = gg2.parse_recipe(RECIPE)
    parsed["Manifests"][0]["Artifacts"][0]["URI"] = "changed"
    assert RECIPE["Manifests"][0]["Artifacts"][0]["URI"] == "s3://bucket-a/detector.zip"


@pytest.mark.parametrize(
    ("change", "version_option", "expected"),
    [
        ({"RecipeFormatVersion": "2019-01-01"}, None, "recipe.RecipeFormatVersion must be '2020-01-25'"),
        ({"ComponentName": "has space"}, None, "recipe.ComponentName must be 1-128 characters"),
        ({"ComponentName": "aws.greengrass.Nucleus"}, None, "reserved for AWS"),
        ({"ComponentVersion": "1.0"}, None, "recipe.ComponentVersion must be a semantic version"),
        ({"ComponentVersion": "1.0.0+build"}, None, "recipe.ComponentVersion must be a semantic version"),
        ({}, "v2", "version must be 'auto' or a semantic version"),
        ({"ComponentVersion": "one"}, "auto", "the base for version: auto"),
        ({"Manifests": {"Platform": {}}}, None, "recipe.Manifests must be a list"),
        ({"Manifests": [{"Artifacts": [{"URI": "s3://B/k"}]}]}, None, "is not s3://bucket/key"),
        ({"Manifests": [{"Artifacts": [{"URI": "https://x/y"}]}]}, None, "must start with s3://"),
    ],
)
def test_recipe_validation_names_the_field(change, version_option, expected):
    problems = gg2.validate_recipe(dict(RECIPE, **change), version_option)
    assert any(expected in p for p in problems), problems


def test_valid_recipes_pass():
    assert gg2.validate_recipe(RECIPE) == []
    assert gg2.validate_recipe({k: v for k, v in RECIPE.items() if k != "ComponentVersion"}, "auto") == []
    assert gg2.validate_recipe(dict(RECIPE, ComponentVersion="2.0.0-beta.1"), "3.1.4") == []


# ---------------------------------------------------------------- content hash


def test_hash_ignores_version_and_service_digest_but_not_content():
    fingerprints = {"s3://bucket-a/detector.zip": "etag1:100"}
    base = gg2.content_hash(RECIPE, fingerprints)
    assert len(base) == 64
    assert gg2.content_hash(dict(RECIPE, ComponentVersion="9.9.9"), fingerprints) == base
    stored = gg2.parse_recipe(RECIPE)
    stored["Manifests"][0]["Artifacts"][0].update(Digest="abc=", Algorithm="SHA-256")
    assert gg2.content_hash(stored, fingerprints) == base
    assert gg2.content_hash(json.loads(json.dumps(RECIPE, sort_keys=True)), fingerprints) == base  # key order
    assert gg2.content_hash(dict(RECIPE, ComponentDescription="x"), fingerprints) != base
    assert gg2.content_hash(RECIPE, {"s3://bucket-a/detector.zip": "etag2:100"}) != base
    assert gg2.content_hash(RECIPE, {}) != base


# ---------------------------------------------------------------- versions


def test_versions_sort_semantically():
    versions = ["1.10.0", "1.2.0", "1.2.0-rc.1", "0.9.9", "1.2.1"]
    assert sorted(versions, key=gg2.version_key, reverse=True) == ["1.10.0", "1.2.1", "1.2.0", "1.2.0-rc.1", "0.9.9"]


@pytest.mark.parametrize(
    ("existing", "base", "expected"),
    [
        ([], None, "1.0.0"),
        ([], "2.3.0", "2.3.0"),
        (["1.0.0", "1.0.9", "1.0.10"], None, "1.0.11"),
        (["1.0.0", "1.0.1"], "2.0.0", "2.0.0"),  # a raised base in the recipe wins
        (["1.0.0", "1.0.1"], "1.0.0", "1.0.2"),
        (["2.0.0-rc.1"], "1.0.0", "2.0.0"),  # the release after a pre-release
    ],
)
def test_next_patch_version(existing, base, expected):
    assert gg2.next_patch_version(existing, base) == expected


@pytest.mark.parametrize(
    ("requested", "existing", "expected"),
    [
        ("1.0.0", {}, ("create", "1.0.0")),
        ("1.0.0", {"1.0.0": "H"}, ("none", "1.0.0")),
        ("1.0.0", {"1.0.0": "other"}, ("conflict", "1.0.0")),
        ("1.0.0", {"1.0.0": None}, ("conflict", "1.0.0")),  # unknown content is not assumed equal
        ("1.0.1", {"1.0.0": "H"}, ("create", "1.0.1")),
        ("auto", {}, ("create", "1.0.0")),
        ("auto", {"1.0.0": "other", "1.0.1": "H"}, ("none", "1.0.1")),
        ("auto", {"1.0.0": "other", "1.0.3": "x"}, ("create", "1.0.4")),
    ],
)
def test_plan_component(requested, existing, expected):
    assert gg2.plan_component("H", requested, existing, base_version="1.0.0") == expected


# ---------------------------------------------------------------- deployments


def deployment_params(**overrides):
    """Options as AnsibleModule hands them over (unset suboptions present as None)."""
    base = {
        "deployment_name": "detectors",
        "components": {"com.edgeml.Detector": {"component_version": "1.0.0"}},
        "failure_handling_policy": "ROLLBACK",
        "component_update_policy": None,
        "configuration_validation_policy": None,
        "iot_job_configuration": None,
    }
    base.update(overrides)
    return base


def test_request_from_options():
    params = deployment_params(
        components={
            "com.edgeml.Detector": {
                "component_version": "1.0.0",
                "configuration_update": {"merge": {"threshold": 0.5}, "reset": ["/topic"]},
                "run_with": {"posix_user": "ggc_user", "system_resource_limits": {"memory": 1024, "cpus": 0.5}},
            }
        },
        component_update_policy={"action": "NOTIFY_COMPONENTS", "timeout_in_seconds": None},
        iot_job_configuration={
            "job_executions_rollout_config": {"maximum_per_minute": 10, "exponential_rate": None},
            "abort_config": {
                "criteria_list": [
                    {
                        "failure_type": "FAILED",
                        "action": "CANCEL",
                        "threshold_percentage": 20.0,
                        "min_number_of_executed_things": 5,
                    }
                ]
            },
            "timeout_config": None,
        },
    )
    request = gg2.build_deployment_request(params, GROUP_ARN)
    assert request == {
        "targetArn": GROUP_ARN,
        "deploymentName": "detectors",
        "components": {
            "com.edgeml.Detector": {
                "componentVersion": "1.0.0",
                "configurationUpdate": {"merge": '{"threshold": 0.5}', "reset": ["/topic"]},
                "runWith": {"posixUser": "ggc_user", "systemResourceLimits": {"memory": 1024, "cpus": 0.5}},
            }
        },
        "deploymentPolicies": {
            "failureHandlingPolicy": "ROLLBACK",
            "componentUpdatePolicy": {"action": "NOTIFY_COMPONENTS"},
        },
        "iotJobConfiguration": {
            "jobExecutionsRolloutConfig": {"maximumPerMinute": 10},
            "abortConfig": {
                "criteriaList": [
                    {
                        "failureType": "FAILED",
                        "action": "CANCEL",
                        "thresholdPercentage": 20.0,
                        "minNumberOfExecutedThings": 5,
                    }
                ]
            },
        },
    }


@pytest.mark.parametrize(
    ("components", "expected"),
    [
        ({}, "components must name at least one component"),
        ({"bad name": {"component_version": "1.0.0"}}, "'bad name' is not a component name"),
        ({"a.B": {"component_version": "latest"}}, "components.a.B.component_version must be a semantic version"),
        ({"a.B": {"component_version": "1.0.0", "version": "x"}}, "components.a.B: unknown keys version"),
        ({"a.B": "1.0.0"}, "components.a.B must be a dict"),
        (
            {"a.B": {"component_version": "1.0.0", "configuration_update": {"merge": "[1]"}}},
            "configuration_update.merge must be a dict or JSON object",
        ),
        (
            {"a.B": {"component_version": "1.0.0", "configuration_update": {"reset": "/x"}}},
            "reset must be a list of JSON pointers",
        ),
        (
            {"a.B": {"component_version": "1.0.0", "configuration_update": {"replace": {}}}},
            "configuration_update takes only merge and reset",
        ),
        ({"a.B": {"component_version": "1.0.0", "run_with": {"user": "x"}}}, "run_with takes only posix_user"),
    ],
)
def test_component_options_are_validated(components, expected):
    with pytest.raises(gg2.GreengrassV2InputError) as excinfo:
        gg2.build_components(components)
    assert any(expected in p for p in excinfo.value.problems), excinfo.value.problems


def _as_returned(request, **extra):
    """A GetDeployment answer for a request: AWS keeps what was sent and adds its own fields."""
    returned = json.loads(json.dumps(request))
    returned.update({"deploymentId": "d-1", "deploymentStatus": "ACTIVE", "revisionId": "1"}, **extra)
    return returned


def test_same_deployment_needs_nothing_new():
    request = gg2.build_deployment_request(deployment_params(), GROUP_ARN)
    assert not gg2.deployment_differs(request, _as_returned(request))


def test_aws_defaults_and_merge_text_do_not_count_as_changes():
    merge_dict = deployment_params(
        components={
            "com.edgeml.Detector": {"component_version": "1.0.0", "configuration_update": {"merge": {"a": 1, "b": 2}}}
        },
        component_update_policy={"action": "NOTIFY_COMPONENTS", "timeout_in_seconds": 60},
    )
    desired = gg2.build_deployment_request(merge_dict, GROUP_ARN)
    latest = _as_returned(desired)
    latest["components"]["com.edgeml.Detector"]["configurationUpdate"]["merge"] = '{"b":2,"a":1}'
    latest["deploymentPolicies"] = {
        "failureHandlingPolicy": "ROLLBACK",
        "configurationValidationPolicy": {"timeoutInSeconds": 30},
    }
    assert not gg2.deployment_differs(desired, latest)


@pytest.mark.parametrize(
    "change",
    [
        {"components": {"com.edgeml.Detector": {"component_version": "1.0.1"}}},
        {
            "components": {
                "com.edgeml.Detector": {"component_version": "1.0.0"},
                "com.edgeml.Camera": {"component_version": "1.0.0"},
            }
        },
        {
            "components": {
                "com.edgeml.Detector": {"component_version": "1.0.0", "configuration_update": {"reset": ["/a"]}}
            }
        },
        {"failure_handling_policy": "DO_NOTHING"},
        {"component_update_policy": {"action": "SKIP_NOTIFY_COMPONENTS", "timeout_in_seconds": None}},
        {"iot_job_configuration": {"timeout_config": {"in_progress_timeout_in_minutes": 5}}},
        {"deployment_name": "renamed"},
    ],
    ids=["version", "added-component", "config-reset", "failure-policy", "update-policy", "job-timeout", "name"],
)
def test_each_kind_of_change_needs_a_new_deployment(change):
    latest = _as_returned(gg2.build_deployment_request(deployment_params(), GROUP_ARN))
    assert gg2.deployment_differs(gg2.build_deployment_request(deployment_params(**change), GROUP_ARN), latest)


def test_no_or_canceled_latest_deployment_needs_a_new_one():
    request = gg2.build_deployment_request(deployment_params(), GROUP_ARN)
    assert gg2.deployment_differs(request, None)
    assert gg2.deployment_differs(request, _as_returned(request, deploymentStatus="CANCELED"))


def test_device_execution_view():
    effective = {
        "deploymentId": "d-1",
        "coreDeviceExecutionStatus": "FAILED",
        "reason": "broken",
        "statusDetails": {"errorStack": ["DEPLOYMENT_FAILURE"], "errorTypes": ["COMPONENT_ERROR"]},
    }
    assert gg2.device_execution("core-1", effective) == {
        "core_device": "core-1",
        "status": "FAILED",
        "reason": "broken",
        "error_stack": ["DEPLOYMENT_FAILURE"],
        "error_types": ["COMPONENT_ERROR"],
    }
    assert gg2.device_execution("core-2", None)["status"] is None


# ---------------------------------------------------------------- components someone else deployed

OURS, THEIRS = "com.edgeml.Detector", "com.example.LogShipper"


def _deployment(components, owned=()):
    return {
        "deploymentId": "d-1",
        "components": {name: {"componentVersion": "1.0.0"} for name in components},
        "tags": dict(gg2.ownership_tags(owned), team="other"),
    }


def test_ownership_tags_record_each_component_and_read_back():
    tags = gg2.ownership_tags(["b.Two", "a.One"])
    assert tags == {"edgeml:component:1": "a.One", "edgeml:component:2": "b.Two"}
    assert gg2.owned_components({"tags": dict(tags, team="other")}) == {"a.One", "b.Two"}
    assert gg2.owned_components(None) == set()


def test_others_components_are_kept_and_ours_not_asked_for_are_removed():
    latest = _deployment([OURS, THEIRS, "com.edgeml.OldModel"], owned=[OURS, "com.edgeml.OldModel"])
    desired = {OURS: {"componentVersion": "2.0.0"}}
    plan = gg2.ComponentsPlan(desired, latest, {OURS, "com.edgeml.OldModel"}, "keep", [])
    assert plan.components == {OURS: {"componentVersion": "2.0.0"}, THEIRS: {"componentVersion": "1.0.0"}}
    assert sorted(plan.kept) == [THEIRS] and plan.removed == ["com.edgeml.OldModel"] and not plan.refused


def test_replace_is_refused_unless_each_of_the_others_is_named():
    latest = _deployment([OURS, THEIRS, "aws.greengrass.Cli"], owned=[OURS])
    refused = gg2.ComponentsPlan({OURS: {}}, latest, {OURS}, "replace", ["aws.greengrass.Cli"])
    assert refused.refused and refused.unlisted == [THEIRS]
    named = gg2.ComponentsPlan({OURS: {}}, latest, {OURS}, "replace", ["aws.greengrass.Cli", THEIRS])
    assert not named.refused and named.components == {OURS: {}}
    assert named.removed == ["aws.greengrass.Cli", THEIRS]


def test_keep_still_removes_the_others_named_and_ignores_names_not_deployed():
    latest = _deployment([OURS, THEIRS, "aws.greengrass.Cli"], owned=[OURS])
    plan = gg2.ComponentsPlan({OURS: {}}, latest, {OURS}, "keep", ["aws.greengrass.Cli", "com.example.Gone"])
    assert sorted(plan.kept) == [THEIRS] and plan.removed == ["aws.greengrass.Cli"]


def test_without_a_latest_deployment_only_the_asked_components_go():
    plan = gg2.ComponentsPlan({OURS: {}}, None, set(), "replace", [])
    assert plan.components == {OURS: {}} and plan.kept == {} and plan.removed == [] and not plan.refused
