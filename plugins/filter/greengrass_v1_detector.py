# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The greengrass_v1_detector role's Greengrass group content and its Lambda version choices.

Documentation: the .yml files beside this one (one per filter). The role's vars/main.yml only gathers the inputs;
what the group holds (resources, functions with their environment and resource access, subscriptions) is built here,
where it is unit-tested (tests/unit/plugins/filter/test_greengrass_v1_detector_filters.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath
import re

from ansible.errors import AnsibleFilterError

CAMERA_SOURCE = re.compile(r"^/dev/video[0-9]+$")


def lambda_alias_field(alias_info, alias_name, field):
    """``field`` (alias_arn, function_version) of the alias ``alias_name`` in an amazon.aws.lambda_info result
    (query: aliases); '' when the function or the alias does not exist (the result is then a failure or skipped)."""
    functions = (alias_info or {}).get("functions") or [{}]
    for alias in functions[0].get("aliases") or []:
        if alias.get("name") == alias_name:
            return alias.get(field, "")
    return ""


def lambda_code_version(versions_info, code_sha256, would_publish=False):
    """The newest published version whose code is ``code_sha256``, from an amazon.aws.lambda_info result (query:
    versions): what the alias must name. With ``would_publish`` (check mode, the code would be uploaded) the version
    that upload would publish, the newest plus one."""
    try:
        versions = [v for v in versions_info["functions"][0]["versions"] if v["version"] != "$LATEST"]
    except (KeyError, IndexError, TypeError):
        raise AnsibleFilterError(
            "lambda_code_version: expected amazon.aws.lambda_info's result with query=versions"
        ) from None
    if would_publish:
        return max([int(v["version"]) for v in versions] or [0]) + 1
    matching = [int(v["version"]) for v in versions if v.get("code_sha256") == code_sha256]
    if not matching:
        raise AnsibleFilterError(
            "lambda_code_version: no published version of the function has the package's code (sha256 {0}); "
            "published: {1}".format(code_sha256, ", ".join(v["version"] for v in versions) or "none")
        )
    return max(matching)


def _device_resource(name, path):
    return {
        "name": name,
        "resource_data_container": {
            "local_device_resource_data": {"source_path": path, "group_owner_setting": {"auto_add_group_owner": True}}
        },
    }


def _function(alias_arn, settings, variables, access_policies):
    return {
        "function_arn": alias_arn,
        "pinned": True,
        "memory_size": int(settings["memory_size"]),
        "timeout": int(settings["timeout"]),
        "encoding_type": "json",
        "environment": {"variables": variables, "resource_access_policies": access_policies},
    }


def _detector_environment(detector, model, version):
    """The detector Lambda's environment (object_detector.DetectorConfig reads it; values are strings). A core
    resolves the alias when it is deployed, so the version the alias names is part of the environment: new code
    makes a new group version to deploy."""
    variables = {
        "MODEL_PATH": re.sub("/+$", "", model["destination"]) + "/" + model["prefix"],
        "SCORE_THRESHOLD": str(detector["score_threshold"]),
        "MAX_DETECTIONS": str(detector["max_detections"]),
        "DETECTOR_CONTEXT": detector["context"],
        "OUTPUT_TOPIC": detector["output_topic"],
        "DETECTOR_LAMBDA_VERSION": str(version),
    }
    if detector.get("class_labels"):
        variables["CLASS_LABELS"] = ",".join(detector["class_labels"])
    for key, value in (detector.get("extra_environment") or {}).items():
        variables[key] = str(value)
    return variables


def _capture(capture, detector, detector_variables, detector_policies, detector_alias_arn, settings):
    """(resources, functions, subscriptions, the detector's extra access) of the optional frame capture Lambda."""
    if not capture.get("enabled"):
        return [], [], [], []
    mode, source, volume = capture["mode"], capture["source"], capture["volume_name"]
    cameras = [_device_resource("camera-" + posixpath.basename(source), source)] if CAMERA_SOURCE.match(source) else []
    volumes = []
    detector_extra = []
    if mode == "files":
        frame_dir = capture["frame_dir"]
        volumes = [
            {
                "name": volume,
                "resource_data_container": {
                    "local_volume_resource_data": {
                        "source_path": frame_dir,
                        "destination_path": frame_dir,
                        "group_owner_setting": {"auto_add_group_owner": True},
                    }
                },
            }
        ]
        detector_extra = [{"resource_id": volume, "permission": "ro"}]  # the detector reads the frames
    # In process, the capture function hosts the detector: it needs the detector's access and environment.
    if mode == "inprocess":
        policies = list(detector_policies)
        variables = dict((k, v) for k, v in detector_variables.items() if k != "DETECTOR_LAMBDA_VERSION")
    else:
        policies = [{"resource_id": volume, "permission": "rw"}]
        variables = {"CAPTURE_FRAME_DIR": capture["frame_dir"], "CAPTURE_FRAME_TOPIC": detector["input_topic"]}
    policies += [{"resource_id": camera["name"], "permission": "rw"} for camera in cameras]
    variables.update(
        {
            "CAPTURE_SOURCE": source,
            "CAPTURE_RATE": str(capture["rate"]),
            "CAPTURE_MODE": mode,
            "CAPTURE_RETRY_MAX_S": str(capture["retry_max"]),
            "OUTPUT_TOPIC": detector["output_topic"],
            "CAPTURE_LAMBDA_VERSION": str(capture["version"]),
        }
    )
    alias_arn = capture["alias_arn"]
    # Errors (and, in process, detections) go to the cloud; in files mode the frames' paths go to the detector.
    subscriptions = [{"source": alias_arn, "subject": detector["output_topic"], "target": "cloud"}]
    if mode == "files":
        subscriptions.append({"source": alias_arn, "subject": detector["input_topic"], "target": detector_alias_arn})
    return cameras + volumes, [_function(alias_arn, settings, variables, policies)], subscriptions, detector_extra


def greengrass_v1_detector_group(spec):
    """{resources, functions, subscriptions} of a device's Greengrass V1 group: the detector Lambda with its model
    (an S3 machine learning resource), one local device resource per NVIDIA device file on a GPU device, and the
    optional frame capture Lambda with its camera or frame volume. Arguments of edgeml.greengrass.greengrass_v1_group.
    """
    try:
        model, detector, function = spec["model"], spec["detector"], spec["function"]
        capture = spec.get("capture") or {}
        # The model's S3 URI when given, else its bucket and key.
        s3_uri = model.get("s3_uri") or "s3://{0}/{1}".format(model["bucket"], model["key"])
        model_resource = {
            "name": model["resource_name"],
            "resource_data_container": {
                "s3_machine_learning_model_resource_data": {
                    "s3_uri": s3_uri,
                    "destination_path": model["destination"],
                }
            },
        }
        devices = [_device_resource(posixpath.basename(path), path) for path in spec.get("nvidia_devices") or []]
        if not spec.get("gpu"):
            devices = []
        policies = [{"resource_id": model["resource_name"], "permission": "ro"}]
        policies += [{"resource_id": device["name"], "permission": "rw"} for device in devices]
        variables = _detector_environment(detector, model, function["version"])
        capture_resources, capture_functions, capture_subscriptions, detector_extra = _capture(
            capture, detector, variables, policies, function["alias_arn"], function
        )
    except KeyError as missing:
        raise AnsibleFilterError("greengrass_v1_detector_group: the input has no {0}".format(missing)) from None
    return {
        "resources": [model_resource] + devices + capture_resources,
        "functions": [_function(function["alias_arn"], function, variables, policies + detector_extra)]
        + capture_functions,
        "subscriptions": [
            {"source": "cloud", "subject": detector["input_topic"], "target": function["alias_arn"]},
            {"source": function["alias_arn"], "subject": detector["output_topic"], "target": "cloud"},
        ]
        + capture_subscriptions,
    }


class FilterModule(object):
    def filters(self):
        return {
            "greengrass_v1_detector_group": greengrass_v1_detector_group,
            "lambda_alias_field": lambda_alias_field,
            "lambda_code_version": lambda_code_version,
        }
