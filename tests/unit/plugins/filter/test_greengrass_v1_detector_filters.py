"""The greengrass_v1_detector role's group content and Lambda version filters (plugins/filter/greengrass_v1_detector.py)

The role's vars/main.yml gave the same content as Jinja before these filters; the cases below are what that Jinja
produced for the same inputs (compared once by rendering both, for CPU/GPU, S3 URI/bucket, and each capture mode).
"""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.edgeml.greengrass.plugins.filter.greengrass_v1_detector import (
    greengrass_v1_detector_group,
    lambda_alias_field,
    lambda_code_version,
)

DETECTOR_ARN = "arn:aws:lambda:us-east-1:123456789012:function:det:live"
CAPTURE_ARN = "arn:aws:lambda:us-east-1:123456789012:function:cap:live"


def spec(**changes):
    base = {
        "model": {"resource_name": "ssd-model", "s3_uri": "", "bucket": "models", "key": "ssd/model.tar.gz",
                  "destination": "/ml/model/", "prefix": "deploy_model_algo_1"},
        "gpu": False,
        "nvidia_devices": ["/dev/nvidia0", "/dev/nvidia-uvm"],
        "function": {"alias_arn": DETECTOR_ARN, "version": "3", "memory_size": "2097152", "timeout": 30},
        "detector": {"score_threshold": 0.35, "max_detections": 10, "context": "cpu", "class_labels": [],
                     "input_topic": "blog/infer/input", "output_topic": "blog/infer/output", "extra_environment": {}},
        "capture": {"enabled": False, "mode": "files", "source": "/dev/video0", "rate": 2, "retry_max": 30,
                    "frame_dir": "/var/lib/frames", "volume_name": "capture-frames", "alias_arn": "", "version": ""},
    }  # fmt: skip
    for key, value in changes.items():
        base[key] = dict(base[key], **value) if isinstance(value, dict) else value
    return base


def test_cpu_device_without_capture():
    group = greengrass_v1_detector_group(spec())
    assert group["resources"] == [
        {
            "name": "ssd-model",
            "resource_data_container": {
                "s3_machine_learning_model_resource_data": {
                    "s3_uri": "s3://models/ssd/model.tar.gz",
                    "destination_path": "/ml/model/",
                }
            },
        }
    ]
    (function,) = group["functions"]
    assert function == {
        "function_arn": DETECTOR_ARN,
        "pinned": True,
        "memory_size": 2097152,
        "timeout": 30,
        "encoding_type": "json",
        "environment": {
            "variables": {
                "MODEL_PATH": "/ml/model/deploy_model_algo_1",
                "SCORE_THRESHOLD": "0.35",
                "MAX_DETECTIONS": "10",
                "DETECTOR_CONTEXT": "cpu",
                "OUTPUT_TOPIC": "blog/infer/output",
                "DETECTOR_LAMBDA_VERSION": "3",
            },
            "resource_access_policies": [{"resource_id": "ssd-model", "permission": "ro"}],
        },
    }
    assert group["subscriptions"] == [
        {"source": "cloud", "subject": "blog/infer/input", "target": DETECTOR_ARN},
        {"source": DETECTOR_ARN, "subject": "blog/infer/output", "target": "cloud"},
    ]


def test_gpu_device_gets_its_device_files_and_the_environment_its_extras():
    group = greengrass_v1_detector_group(
        spec(
            gpu=True,
            model={"s3_uri": "s3://other/key.tar.gz"},
            detector={"class_labels": ["a", "b"], "extra_environment": {"FOO": 1}},
        )
    )
    assert [r["name"] for r in group["resources"]] == ["ssd-model", "nvidia0", "nvidia-uvm"]
    assert group["resources"][0]["resource_data_container"]["s3_machine_learning_model_resource_data"]["s3_uri"] == (
        "s3://other/key.tar.gz"
    )
    assert group["resources"][1]["resource_data_container"] == {
        "local_device_resource_data": {
            "source_path": "/dev/nvidia0",
            "group_owner_setting": {"auto_add_group_owner": True},
        }
    }
    environment = group["functions"][0]["environment"]
    assert environment["resource_access_policies"] == [
        {"resource_id": "ssd-model", "permission": "ro"},
        {"resource_id": "nvidia0", "permission": "rw"},
        {"resource_id": "nvidia-uvm", "permission": "rw"},
    ]
    assert environment["variables"]["CLASS_LABELS"] == "a,b" and environment["variables"]["FOO"] == "1"


def test_files_capture_with_a_camera():
    group = greengrass_v1_detector_group(
        spec(capture={"enabled": True, "mode": "files", "alias_arn": CAPTURE_ARN, "version": "5", "rate": 2.5})
    )
    assert [r["name"] for r in group["resources"]] == ["ssd-model", "camera-video0", "capture-frames"]
    assert group["resources"][2]["resource_data_container"]["local_volume_resource_data"]["source_path"] == (
        "/var/lib/frames"
    )
    detector, capture = group["functions"]
    assert detector["environment"]["resource_access_policies"][-1] == {
        "resource_id": "capture-frames",
        "permission": "ro",
    }
    assert capture["function_arn"] == CAPTURE_ARN and capture["memory_size"] == 2097152
    assert capture["environment"] == {
        "variables": {
            "CAPTURE_FRAME_DIR": "/var/lib/frames",
            "CAPTURE_FRAME_TOPIC": "blog/infer/input",
            "CAPTURE_SOURCE": "/dev/video0",
            "CAPTURE_RATE": "2.5",
            "CAPTURE_MODE": "files",
            "CAPTURE_RETRY_MAX_S": "30",
            "OUTPUT_TOPIC": "blog/infer/output",
            "CAPTURE_LAMBDA_VERSION": "5",
        },
        "resource_access_policies": [
            {"resource_id": "capture-frames", "permission": "rw"},
            {"resource_id": "camera-video0", "permission": "rw"},
        ],
    }
    assert group["subscriptions"][2:] == [
        {"source": CAPTURE_ARN, "subject": "blog/infer/output", "target": "cloud"},
        {"source": CAPTURE_ARN, "subject": "blog/infer/input", "target": DETECTOR_ARN},
    ]


def test_in_process_capture_of_a_stream_hosts_the_detector():
    group = greengrass_v1_detector_group(
        spec(
            gpu=True,
            capture={"enabled": True, "mode": "inprocess", "source": "rtsp://cam/stream", "alias_arn": CAPTURE_ARN,
                     "version": "5"},
        )
    )  # fmt: skip
    assert [r["name"] for r in group["resources"]] == ["ssd-model", "nvidia0", "nvidia-uvm"]  # no camera, no volume
    detector, capture = group["functions"]
    variables = capture["environment"]["variables"]
    assert "DETECTOR_LAMBDA_VERSION" not in variables and variables["MODEL_PATH"] == "/ml/model/deploy_model_algo_1"
    assert variables["CAPTURE_LAMBDA_VERSION"] == "5" and variables["CAPTURE_MODE"] == "inprocess"
    assert capture["environment"]["resource_access_policies"] == detector["environment"]["resource_access_policies"]
    assert group["subscriptions"][2:] == [{"source": CAPTURE_ARN, "subject": "blog/infer/output", "target": "cloud"}]


def test_a_missing_input_is_named():
    broken = spec()
    del broken["detector"]["output_topic"]
    with pytest.raises(AnsibleFilterError, match="has no 'output_topic'"):
        greengrass_v1_detector_group(broken)


VERSIONS = {
    "functions": [
        {
            "versions": [
                {"version": "$LATEST", "code_sha256": "new"},
                {"version": "1", "code_sha256": "old"},
                {"version": "10", "code_sha256": "new"},
                {"version": "9", "code_sha256": "new"},
            ]
        }
    ]
}


def test_code_version_is_the_newest_with_the_code_or_the_next_one_to_publish():
    assert lambda_code_version(VERSIONS, "new") == 10  # numerically, not "9" > "10"
    assert lambda_code_version(VERSIONS, "old") == 1
    assert lambda_code_version(VERSIONS, "other", would_publish=True) == 11
    assert lambda_code_version({"functions": [{"versions": [{"version": "$LATEST"}]}]}, "x", would_publish=True) == 1
    with pytest.raises(AnsibleFilterError, match=r"no published version .* \(sha256 other\); published: 1, 10, 9"):
        lambda_code_version(VERSIONS, "other")
    with pytest.raises(AnsibleFilterError, match="query=versions"):
        lambda_code_version({"skipped": True}, "new")


def test_alias_field_of_an_alias_that_exists_or_not():
    info = {"functions": [{"aliases": [{"name": "live", "alias_arn": DETECTOR_ARN, "function_version": "3"}]}]}
    assert lambda_alias_field(info, "live", "alias_arn") == DETECTOR_ARN
    assert lambda_alias_field(info, "live", "function_version") == "3"
    assert lambda_alias_field(info, "other", "alias_arn") == ""
    assert lambda_alias_field({"failed": True, "msg": "KeyError"}, "live", "alias_arn") == ""
    assert lambda_alias_field({}, "live", "alias_arn") == ""
