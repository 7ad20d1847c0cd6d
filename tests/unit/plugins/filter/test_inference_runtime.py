"""The inference_runtime_requirements filter with the role's own table of builds (roles/inference_runtime/vars)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.edgeml.greengrass.plugins.filter.inference_runtime import inference_runtime_requirements

VARS = Path(__file__).resolve().parents[4] / "roles" / "inference_runtime" / "vars" / "main.yml"


@pytest.fixture(scope="module")
def builds():
    table = yaml.safe_load(VARS.read_text())["__inference_runtime_builds"]
    # The two templated entries, as the role's defaults give them.
    table["opencv"] = "4.11.0.86"
    table["mxnet"]["version"] = "1.9.1"
    return table


def choose(builds, **device):
    return inference_runtime_requirements(
        dict({"architecture": "x86_64", "cuda": "", "python": "3.11"}, **device), builds
    )


@pytest.mark.parametrize(
    ("python", "onnxruntime", "numpy"),
    [
        ("3.8", "1.19.2", "1.24.4"),
        ("3.9", "1.19.2", "2.0.2"),
        ("3.10", "1.23.2", "2.2.6"),
        ("3.11", "1.24.4", "2.2.6"),
        ("3.12", "1.24.4", "2.2.6"),
        ("3.13", "1.24.4", "2.2.6"),
        ("3.14", "1.24.4", "2.3.5"),
    ],
)
def test_onnx_runtime_versions_follow_the_devices_python(builds, python, onnxruntime, numpy):
    choice = choose(builds, backend="onnxruntime", python=python)
    assert choice["problems"] == []
    assert choice["requirements"] == [
        f"onnxruntime=={onnxruntime}",
        f"numpy=={numpy}",
        "opencv-python-headless==4.11.0.86",
    ]
    assert choice["pins"] == {"onnxruntime": onnxruntime, "numpy": numpy, "opencv-python-headless": "4.11.0.86"}


def test_onnx_runtime_gpu_build_on_cuda_12(builds):
    choice = choose(builds, backend="onnxruntime", python="3.12", cuda="12.8")
    assert choice["package"] == "onnxruntime-gpu"
    assert choice["requirements"][0] == "onnxruntime-gpu[cuda,cudnn]==1.24.4"
    assert choice["pins"]["onnxruntime-gpu"] == "1.24.4"


@pytest.mark.parametrize(
    ("device", "problem"),
    [
        ({"backend": "onnxruntime", "python": "3.7"}, "is Python 3.7; ONNX Runtime has wheels for Python 3.10, 3.11,"),
        ({"backend": "onnxruntime", "cuda": "11.8"}, "CUDA 11.8 found; onnxruntime-gpu's PyPI builds"),
        (
            {"backend": "onnxruntime", "cuda": "12.2", "architecture": "aarch64"},
            "No onnxruntime-gpu build for CUDA 12.2",
        ),
        ({"backend": "mxnet", "python": "3.12"}, "is Python 3.12, but numpy 1.23.5 (MXNet 1.9.1 needs numpy < 1.24)"),
        ({"backend": "mxnet", "cuda": "12.4"}, "No MXNet 1.9.1 GPU build for CUDA 12.4"),
        ({"backend": "mxnet", "cuda": "11.2", "architecture": "aarch64"}, "mxnet-cu112 is published for x86_64 only"),
        ({"backend": "caffe"}, "inference_runtime_backend must be one of onnxruntime, mxnet, got 'caffe'"),
    ],
)
def test_what_a_device_cannot_have_is_named(builds, device, problem):
    problems = choose(builds, **device)["problems"]
    assert len(problems) == 1 and problem in problems[0], problems


def test_pinned_versions_are_taken_as_given(builds):
    choice = choose(builds, backend="onnxruntime", python="3.7", onnxruntime_version="1.14.1", numpy_version="1.21.6")
    assert choice["problems"] == [] and choice["requirements"][:2] == ["onnxruntime==1.14.1", "numpy==1.21.6"]
    mxnet = choose(builds, backend="mxnet", mxnet_package="mxnet", cuda="12.4")
    assert mxnet["requirements"] == ["mxnet==1.9.1", "numpy==1.23.5", "opencv-python-headless==4.11.0.86"]
