#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ssd_model_archive_info
short_description: List a model archive and say whether it holds an MXNet checkpoint with a given prefix
description:
  - Reads the member names of a C(.tar.gz) model archive (as the Greengrass V1 core unpacks it) and reports
    whether C(<prefix>-symbol.json) and C(<prefix>-<epoch>.params) are among them, at the archive's root.
  - Reads only; runs on the controller (the greengrass_v1_detector role checks its model input with it).
options:
  path:
    description: The archive.
    type: path
    required: true
  prefix:
    description: Checkpoint prefix, for example C(deploy_model_algo_1).
    type: str
    required: true
  epoch:
    description: Checkpoint epoch (C(-0000.params) for 0).
    type: int
    default: 0
author:
  - edgeml.greengrass contributors (@edgeml)
"""

EXAMPLES = r"""
- name: Look into the model archive
  edgeml.greengrass.ssd_model_archive_info:
    path: /srv/models/ssd_512_resnet50.tar.gz
    prefix: deploy_model_algo_1
  delegate_to: localhost
  register: model_archive
"""

RETURN = r"""
readable:
  description: Whether the file is a readable gzip-compressed tar archive.
  returned: always
  type: bool
error:
  description: Why it is not readable.
  returned: when not readable
  type: str
members:
  description: Names of the regular files in the archive (at most the first 100).
  returned: always
  type: list
  elements: str
expected:
  description: The two file names the checkpoint needs.
  returned: always
  type: list
  elements: str
missing:
  description: Those of RV(expected) that are not in the archive.
  returned: always
  type: list
  elements: str
"""

import tarfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

MAX_LISTED = 100


def read_archive(path, expected):
    """What the archive holds against what the checkpoint needs; an unreadable archive is reported, not failed."""
    members = []
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.isfile():
                    members.append(member.name[2:] if member.name.startswith("./") else member.name)
    except (OSError, EOFError, tarfile.TarError) as error:
        return dict(readable=False, error=str(error), members=[], expected=expected, missing=expected)
    return dict(
        readable=True,
        members=sorted(members)[:MAX_LISTED],
        expected=expected,
        missing=[name for name in expected if name not in members],
    )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            prefix=dict(type="str", required=True),
            epoch=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    prefix = module.params["prefix"]
    expected = ["%s-symbol.json" % prefix, "%s-%04d.params" % (prefix, module.params["epoch"])]
    module.exit_json(changed=False, **read_archive(module.params["path"], expected))


if __name__ == "__main__":
    main()
