#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ssd_model_onnx
short_description: Convert a SageMaker SSD model (MXNet checkpoint) to ONNX and check it against MXNet
description:
  - Reads the MXNet checkpoint C(<prefix>-symbol.json) and C(<prefix>-<epoch>.params) from O(src) (the SageMaker
    built-in SSD's C(model.tar.gz), or a folder holding them) and writes an ONNX model the collection's detector
    runs on ONNX Runtime.
  - The network is exported up to its class probabilities and box offsets (opset 13, weights as initializers);
    the anchors become a constant output and the MultiBoxDetection settings (threshold, clip, variances, NMS
    threshold, force_suppress, top-k) go into the model's metadata, because ONNX has no MultiBoxPrior or
    MultiBoxDetection. The detector decodes and suppresses as MXNet does.
  - Before anything is written, the checkpoint runs on MXNet and the ONNX model on ONNX Runtime on the same
    images (O(verify_images), or three fixed synthetic ones), and the run fails unless both give the same
    detections within O(score_tolerance) and O(box_tolerance). A graph the converter does not know fails naming
    the layer.
  - Deterministic; the same checkpoint and settings give the same bytes, so a Greengrass component made of
    them keeps its version. O(dest) is written only when its content would change; a O(dest) made from the same
    source by the same converter version is not converted again (O(force) does).
  - Runs on the controller (delegated to localhost); needs mxnet, onnx, onnxruntime and OpenCV there.
options:
  src:
    description: The model archive (C(.tar.gz) with the checkpoint at its root) or a folder with the checkpoint.
    type: path
    required: true
  prefix:
    description: Checkpoint prefix.
    type: str
    default: deploy_model_algo_1
  epoch:
    description: Checkpoint epoch (C(-0000.params) for 0).
    type: int
    default: 0
  input_size:
    description:
      - Side of the square input in pixels. Default is C(image_shape) from a C(hyperparams.json) beside the
        checkpoint (SageMaker writes one), else 512.
    type: int
  dest:
    description:
      - Where the ONNX model goes. A name ending in C(.onnx) gets the model alone; a name ending in C(.tar.gz)
        gets an archive holding C(<prefix>.onnx), C(conversion.json) (what was converted and how it verified)
        and the source's C(hyperparams.json) and C(class_labels.json) when it has them.
    type: path
    required: true
  verify_images:
    description: Images to compare MXNet's and ONNX Runtime's detections on. Empty means three fixed synthetic images.
    type: list
    elements: path
    default: []
  score_tolerance:
    description: Largest difference of a detection's score allowed between the two runtimes.
    type: float
    default: 0.001
  box_tolerance:
    description:
      - Largest difference of a box coordinate (normalised to 0..1) allowed between the two runtimes; 0.001 is
        two pixels of a 1920-pixel frame.
    type: float
    default: 0.001
  force:
    description: Convert and verify again even when O(dest) is up to date.
    type: bool
    default: false
requirements:
  - mxnet (1.9.1; numpy < 1.24)
  - onnx
  - onnxruntime
  - opencv-python-headless
author:
  - edgeml.greengrass contributors (@edgeml)
"""

EXAMPLES = r"""
- name: Convert the SageMaker model for ONNX Runtime
  edgeml.greengrass.ssd_model_onnx:
    src: /srv/models/model.tar.gz
    dest: ~/.cache/edgeml/model-onnx.tar.gz
    verify_images:
      - /srv/frames/blue_box_1_000133.jpg
  delegate_to: localhost
  register: onnx_model
"""

RETURN = r"""
dest:
  description: The written (or already up to date) file.
  returned: always
  type: str
sha256:
  description: SHA-256 of O(dest)'s content.
  returned: always
  type: str
source_sha256:
  description: SHA-256 of the source checkpoint (the archive, or the symbol and parameter files).
  returned: always
  type: str
conversion:
  description: What was converted (input size, classes, anchors, MultiBoxDetection settings, opset).
  returned: always
  type: dict
verification:
  description: Images compared, detections found, largest score and box differences between MXNet and ONNX Runtime.
  returned: always
  type: dict
  sample: {"images": 2, "detections": 38, "max_score_difference": 1.2e-07, "max_box_difference": 5.9e-08}
converted:
  description: Whether this run converted (false when O(dest) was up to date).
  returned: always
  type: bool
"""

import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils import _ssd_onnx  # noqa: E402

PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
SIDE_FILES = ("hyperparams.json", "class_labels.json")
REQUIRED_LIBRARIES = (
    ("mxnet", "mxnet"),
    ("onnx", "onnx"),
    ("onnxruntime", "onnxruntime"),
    ("cv2", "opencv-python-headless"),
)


def check_inputs(module):
    params = module.params
    if not os.path.exists(params["src"]):
        module.fail_json(msg="src: {} does not exist; expected a model .tar.gz or a folder".format(params["src"]))
    if not PREFIX_RE.match(params["prefix"]):
        module.fail_json(
            msg="prefix: {!r} is not a checkpoint prefix (letters, digits, . _ -)".format(params["prefix"])
        )
    if params["epoch"] < 0 or params["epoch"] > 9999:
        module.fail_json(msg="epoch: expected 0..9999, got {}".format(params["epoch"]))
    if params["input_size"] is not None and not 32 <= params["input_size"] <= 4096:
        module.fail_json(msg="input_size: expected 32..4096 pixels, got {}".format(params["input_size"]))
    if not params["dest"].endswith((".onnx", ".tar.gz")):
        module.fail_json(msg="dest: {} must end in .onnx or .tar.gz".format(params["dest"]))
    for key in ("score_tolerance", "box_tolerance"):
        if not 0 <= params[key] <= 1:
            module.fail_json(msg="{}: expected a number in 0..1, got {}".format(key, params[key]))
    missing = [path for path in params["verify_images"] if not os.path.isfile(path)]
    if missing:
        module.fail_json(msg="verify_images: not a file: {}".format(", ".join(missing)))
    for name, package in REQUIRED_LIBRARIES:
        try:
            __import__(name)
        except ImportError:
            module.fail_json(msg=missing_required_lib(package), exception=traceback.format_exc())


def stage_checkpoint(module, workdir):
    """Folder with the checkpoint (and side files): the source folder itself, or the archive unpacked into workdir."""
    params = module.params
    src = params["src"]
    needed = ["{}-symbol.json".format(params["prefix"]), "{}-{:04d}.params".format(params["prefix"], params["epoch"])]
    if os.path.isdir(src):
        folder = src
    else:
        try:
            with tarfile.open(src, "r:*") as archive:
                members = [member for member in archive.getmembers() if member.isfile()]
                for member in members:
                    name = os.path.normpath(member.name)
                    if name in needed or name in SIDE_FILES:
                        member.name = name
                        archive.extract(member, workdir, set_attrs=False)
        except (tarfile.TarError, OSError, EOFError) as error:
            module.fail_json(msg="src: {} is not a readable tar archive ({})".format(src, error))
        folder = workdir
    missing = [name for name in needed if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        module.fail_json(
            msg="src: {} has no {} at its root (prefix {}, epoch {})".format(
                src, " or ".join(missing), params["prefix"], params["epoch"]
            )
        )
    return folder, needed


def source_digest(module, folder, needed):
    src = module.params["src"]
    if os.path.isfile(src):
        return _ssd_onnx.sha256_of(src)
    return hashlib.sha256("".join(_ssd_onnx.sha256_of(os.path.join(folder, n)) for n in needed).encode()).hexdigest()


def input_size_of(module, folder):
    if module.params["input_size"] is not None:
        return module.params["input_size"]
    path = os.path.join(folder, "hyperparams.json")
    if not os.path.isfile(path):
        return 512
    try:
        with open(path) as handle:
            size = int(json.load(handle).get("image_shape", 512))
    except (ValueError, TypeError, AttributeError) as error:
        module.fail_json(msg="src: hyperparams.json has no usable image_shape ({}); set input_size".format(error))
    if not 32 <= size <= 4096:
        module.fail_json(msg="src: hyperparams.json's image_shape {} is not 32..4096; set input_size".format(size))
    return size


def recorded_conversion(dest):
    """conversion.json of an existing .tar.gz dest, or the metadata of an existing .onnx dest; None if unreadable."""
    if not os.path.isfile(dest):
        return None
    try:
        if dest.endswith(".tar.gz"):
            with tarfile.open(dest, "r:gz") as archive:
                return json.load(archive.extractfile("conversion.json"))
        import onnx

        metadata = dict((prop.key, prop.value) for prop in onnx.load(dest).metadata_props)
        return json.loads(metadata.get("edgeml.conversion", "null"))
    except Exception:  # noqa: BLE001 - anything unreadable is simply converted again
        return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            prefix=dict(type="str", default="deploy_model_algo_1"),
            epoch=dict(type="int", default=0),
            input_size=dict(type="int"),
            dest=dict(type="path", required=True),
            verify_images=dict(type="list", elements="path", default=[]),
            score_tolerance=dict(type="float", default=0.001),
            box_tolerance=dict(type="float", default=0.001),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    check_inputs(module)
    workdir = tempfile.mkdtemp(prefix="ssd_model_onnx-")
    try:
        result = convert_model(module, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    module.exit_json(**result)


def convert_model(module, workdir):
    """Read the checkpoint, compare with the conversion recorded in dest, convert and verify when it differs, and
    write dest unless in check mode; the module's result."""
    params = module.params
    folder, needed = stage_checkpoint(module, workdir)
    size = input_size_of(module, folder)
    stamp = {
        "source_sha256": source_digest(module, folder, needed),
        "converter_version": _ssd_onnx.CONVERTER_VERSION,
        "prefix": params["prefix"],
        "epoch": params["epoch"],
        "input_size": size,
        "verify_images": sorted(_ssd_onnx.sha256_of(path) for path in params["verify_images"]),
    }
    recorded = recorded_conversion(params["dest"])
    if not params["force"] and recorded and dict((k, recorded.get(k)) for k in stamp) == stamp:
        return dict(
            changed=False,
            converted=False,
            dest=params["dest"],
            sha256=_ssd_onnx.sha256_of(params["dest"]),
            source_sha256=stamp["source_sha256"],
            conversion=recorded["conversion"],
            verification=recorded["verification"],
        )
    prefix_path = os.path.join(folder, params["prefix"])
    try:
        checkpoint = _ssd_onnx.load_checkpoint(prefix_path, params["epoch"])  # once, for both steps
        onnx_bytes, conversion = _ssd_onnx.convert(checkpoint, size)
        images = _ssd_onnx.read_images(params["verify_images"]) or _ssd_onnx.synthetic_images(size)
        verification = _ssd_onnx.verify(
            checkpoint,
            onnx_bytes,
            images,
            size,
            params["score_tolerance"],
            params["box_tolerance"],
        )
    except _ssd_onnx.ConversionError as error:
        module.fail_json(msg="{}: {}".format(params["src"], error))
    record = dict(stamp, conversion=conversion, verification=verification)
    record_bytes = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    if params["dest"].endswith(".tar.gz"):
        members = [("conversion.json", record_bytes), ("{}.onnx".format(params["prefix"]), onnx_bytes)]
        for name in SIDE_FILES:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    members.append((name, handle.read()))
        content = _ssd_onnx.deterministic_tar_gz(members)
    else:
        import onnx

        model = onnx.load_from_string(onnx_bytes)
        onnx.helper.set_model_props(
            model,
            dict(dict((p.key, p.value) for p in model.metadata_props), **{"edgeml.conversion": record_bytes.decode()}),
        )
        content = model.SerializeToString()
    digest = hashlib.sha256(content).hexdigest()
    changed = not os.path.isfile(params["dest"]) or _ssd_onnx.sha256_of(params["dest"]) != digest
    if changed and not module.check_mode:
        parent = os.path.dirname(os.path.abspath(params["dest"]))
        if not os.path.isdir(parent):
            os.makedirs(parent)
        staged = os.path.join(workdir, "dest")
        with open(staged, "wb") as handle:
            handle.write(content)
        os.chmod(staged, 0o644)
        module.atomic_move(staged, os.path.abspath(params["dest"]))
    return dict(
        changed=changed,
        converted=True,
        dest=params["dest"],
        sha256=digest,
        source_sha256=stamp["source_sha256"],
        conversion=conversion,
        verification=verification,
    )


if __name__ == "__main__":
    main()
