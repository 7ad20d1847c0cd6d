# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The inference_runtime role's package choice: which runtime build, at which versions, for one device.

Documentation: inference_runtime_requirements.yml beside this file. The data (which builds exist for which
Python, CUDA and architecture) is the role's vars/main.yml; this is only the decision.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

BACKENDS = ("onnxruntime", "mxnet")


def _pin(name, version):
    return "{0}=={1}".format(name, version)


def _mxnet(device, builds, problems):
    """(package, requirements) for MXNet: the GPU build matching the CUDA version (x86_64 only), else the CPU one."""
    table = builds["mxnet"]
    version = device.get("mxnet_version") or table["version"]
    cuda = str(device.get("cuda") or "")
    package = device.get("mxnet_package") or "auto"
    if package == "auto":
        package = "mxnet" if not cuda else table["cuda_builds"].get(cuda, "")
    if not package:
        problems.append(
            "No MXNet {0} GPU build for CUDA {1} (PyPI has mxnet-cu101 to mxnet-cu117, for CUDA 10.1 to 11.8). Use the "
            "ONNX Runtime backend (inference_runtime_backend: onnxruntime, CUDA 12), install a CUDA 11 toolkit "
            '(nvidia_driver_cuda_toolkit_version), or set inference_runtime_mxnet_package to "mxnet" for the CPU '
            "build.".format(version, cuda)
        )
        return "", []
    if package.startswith("mxnet-cu") and device["architecture"] not in table["gpu_architectures"]:
        problems.append(
            '{0} is published for x86_64 only; this host is {1}. Set inference_runtime_mxnet_package to "mxnet" '
            "(CPU build), use the ONNX Runtime backend, or put a wheel built for this board in "
            "inference_runtime_wheelhouse_src and name its package.".format(package, device["architecture"])
        )
    numpy = device.get("numpy_version") or "auto"
    if numpy == "auto":
        numpy = table["numpy"]
    numpy_pythons = table["numpy_pythons"].get(".".join(numpy.split(".")[:2]))
    if numpy_pythons is not None and device["python"] not in numpy_pythons:
        problems.append(
            'inference_runtime_python "{0}" is Python {1}, but numpy {2} (MXNet 1.9.1 needs numpy < 1.24) has wheels '
            "for Python {3} only. Use the ONNX Runtime backend (Python 3.8 to 3.14) or an older Python.".format(
                device.get("python_command", "python3"), device["python"], numpy, ", ".join(numpy_pythons)
            )
        )
    return package, [_pin(package, version), _pin("numpy", numpy)]


def _onnxruntime(device, builds, problems):
    """(package, requirements) for ONNX Runtime: onnxruntime-gpu (CUDA 12 from PyPI's nvidia-*-cu12 wheels) on a
    CUDA 12 host where that build exists, else the CPU package; versions by the device's Python."""
    table = builds["onnxruntime"]
    python = device["python"]
    by_python = table["by_python"].get(python)
    cuda = str(device.get("cuda") or "")
    package = device.get("onnxruntime_package") or "auto"
    version = device.get("onnxruntime_version") or "auto"
    numpy = device.get("numpy_version") or "auto"
    if by_python is None and "auto" in (version, numpy):
        problems.append(
            'inference_runtime_python "{0}" is Python {1}; ONNX Runtime has wheels for Python {2}. Set '
            "inference_runtime_python to one of those, or pin inference_runtime_onnxruntime_version and "
            "inference_runtime_numpy_version.".format(
                device.get("python_command", "python3"), python or "(unknown)", ", ".join(sorted(table["by_python"]))
            )
        )
        return "", []
    gpu = table["gpu"]
    if package == "auto":
        package = "onnxruntime"
        if cuda:
            gpu_versions = gpu["by_architecture"].get(device["architecture"], {})
            if cuda.split(".", 1)[0] not in gpu["cuda_majors"]:
                problems.append(
                    "CUDA {0} found; onnxruntime-gpu's PyPI builds this role installs are for CUDA {1}. Install CUDA "
                    "12 (nvidia_driver_cuda_toolkit_version), or set inference_runtime_onnxruntime_package to "
                    '"onnxruntime" (CPU).'.format(cuda, " or ".join(gpu["cuda_majors"]))
                )
            elif python not in gpu_versions:
                problems.append(
                    "No onnxruntime-gpu build for CUDA {0} on {1} with Python {2} on PyPI (Jetson boards need the "
                    "JetPack build from NVIDIA's Jetson wheel index). Set inference_runtime_onnxruntime_package to "
                    '"onnxruntime" (CPU), or to the GPU package and its index in '
                    "inference_runtime_pip_extra_args.".format(cuda, device["architecture"], python)
                )
            else:
                package = gpu["package"]
                if version == "auto":
                    version = gpu_versions[python]
    if version == "auto":
        version = by_python["onnxruntime"]
    if numpy == "auto":
        numpy = by_python["numpy"]
    extras = gpu["extras"] if package == gpu["package"] else ""
    return package, [_pin(package + extras, version), _pin("numpy", numpy)]


def inference_runtime_requirements(device, builds):
    """What to install for one device; see inference_runtime_requirements.yml."""
    if not isinstance(device, dict) or not isinstance(builds, dict):
        raise AnsibleFilterError(
            "inference_runtime_requirements: expected a dict of device settings and a dict of builds"
        )
    backend = device.get("backend")
    problems = []
    if backend not in BACKENDS:
        problems.append("inference_runtime_backend must be one of {0}, got {1!r}".format(", ".join(BACKENDS), backend))
        return {"backend": backend, "package": "", "requirements": [], "pins": {}, "problems": problems}
    choose = _onnxruntime if backend == "onnxruntime" else _mxnet
    package, requirements = choose(device, builds, problems)
    if requirements:
        requirements.append(_pin("opencv-python-headless", device.get("opencv_version") or builds["opencv"]))
    # Package name -> version, extras left out (onnxruntime-gpu[cuda,cudnn]==1.24.4 -> onnxruntime-gpu: 1.24.4).
    pins = dict((line.split("==")[0].split("[")[0], line.split("==")[1]) for line in requirements)
    return {"backend": backend, "package": package, "requirements": requirements, "pins": pins, "problems": problems}


class FilterModule(object):
    def filters(self):
        return {"inference_runtime_requirements": inference_runtime_requirements}
