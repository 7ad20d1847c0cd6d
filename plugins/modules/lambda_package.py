#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: lambda_package
short_description: Build a reproducible Lambda deployment package (zip) from a source folder and pure-Python packages
description:
  - Zips the files of O(source_dir) at the root of the archive, plus each package of O(python_packages) as
    found by the Python running this module, with entries sorted, timestamps fixed to 1980-01-01 and
    permissions fixed to 0644 (0755 for folders), so the same sources always give the same bytes.
  - Writes O(dest) only when the archive's SHA-256 differs from the file already there, and reports
    C(changed) only then.
  - Bytecode caches, dot files and the files named in O(exclude) are left out.
  - Runs on the controller. Used by the greengrass_v1_detector role; generation-neutral (a Greengrass V2
    Lambda component imports the same package).
options:
  source_dir:
    description: Folder whose files go at the root of the archive.
    type: path
    required: true
  python_packages:
    description:
      - Importable pure-Python packages to add at the root of the archive (for example C(greengrasssdk)).
        They are looked up with the Python that runs this module.
    type: list
    elements: str
    default: []
  exclude:
    description: File names (not paths) left out wherever they are.
    type: list
    elements: str
    default: []
  dest:
    description: Path of the zip to write; its folder is created.
    type: path
    required: true
author:
  - edgeml.greengrass contributors (@edgeml)
"""

EXAMPLES = r"""
- name: Package the inference Lambda
  edgeml.greengrass.lambda_package:
    source_dir: "{{ role_path }}/../../files/inference_lambda"
    python_packages: [greengrasssdk]
    dest: ~/.cache/edgeml/object-detector.zip
  delegate_to: localhost
"""

RETURN = r"""
sha256:
  description: Hex SHA-256 of the archive.
  returned: always
  type: str
code_sha256:
  description: Base64 SHA-256 of the archive, as AWS Lambda reports it in C(CodeSha256).
  returned: always
  type: str
size:
  description: Size of the archive in bytes.
  returned: always
  type: int
files:
  description: Archive entries, in archive order.
  returned: always
  type: list
  elements: str
dest:
  description: Path of the archive.
  returned: always
  type: str
"""

import base64  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

FIXED_DATE = (1980, 1, 1, 0, 0, 0)
SKIPPED_DIRS = ("__pycache__",)
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _wanted(name, exclude):
    return not (name.startswith(".") or name in exclude or name.endswith(SKIPPED_SUFFIXES))


def collect(root, prefix, exclude):
    """{archive name: file path} of every wanted file under root, archive names under prefix."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and _wanted(d, exclude)]
        for name in files:
            if not _wanted(name, exclude):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            entries[prefix + relative] = path
    return entries


def package_dir(name):
    """Folder of an importable package, or None when it is not importable."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def build_zip(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so external_attr holds the permissions
            info.external_attr = (0o100644 & 0xFFFF) << 16
            with open(entries[name], "rb") as source:
                archive.writestr(info, source.read(), compresslevel=9)
    return buffer.getvalue()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            source_dir=dict(type="path", required=True),
            python_packages=dict(type="list", elements="str", default=[]),
            exclude=dict(type="list", elements="str", default=[]),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    source_dir = module.params["source_dir"]
    exclude = set(module.params["exclude"])
    if not os.path.isdir(source_dir):
        module.fail_json(msg="source_dir %r is not a folder" % source_dir)

    entries = collect(source_dir, "", exclude)
    if not entries:
        module.fail_json(msg="source_dir %r has no files to package" % source_dir)
    for name in module.params["python_packages"]:
        folder = package_dir(name)
        if folder is None:
            module.fail_json(
                msg="python_packages: %r is not importable by the controller's Python (%s); install it there "
                "(pip install %s) so it can be packaged with the Lambda" % (name, sys.executable, name)
            )
        for archive_name, path in collect(folder, name + "/", exclude).items():
            if archive_name in entries:
                module.fail_json(msg="python_packages: %r would overwrite %r of source_dir" % (name, archive_name))
            entries[archive_name] = path

    data = build_zip(entries)
    digest = hashlib.sha256(data)
    dest = module.params["dest"]
    before = None
    if os.path.isfile(dest):
        with open(dest, "rb") as existing:
            before = hashlib.sha256(existing.read()).hexdigest()
    changed = before != digest.hexdigest()

    if changed and not module.check_mode:
        folder = os.path.dirname(dest) or "."
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".package-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        module.atomic_move(temporary, dest)

    module.exit_json(
        changed=changed,
        dest=dest,
        sha256=digest.hexdigest(),
        code_sha256=base64.b64encode(digest.digest()).decode("ascii"),
        size=len(data),
        files=sorted(entries),
        diff=dict(before={"sha256": before}, after={"sha256": digest.hexdigest()}),
    )


if __name__ == "__main__":
    main()
