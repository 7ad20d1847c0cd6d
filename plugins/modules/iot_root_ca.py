#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iot_root_ca
short_description: Install a verified Amazon Root CA certificate for AWS IoT
version_added: 0.1.0
description:
  - Writes Amazon Root CA 1 (RSA 2048) or Amazon Root CA 3 (ECC P-256), the roots that sign AWS IoT's
    ATS endpoints, to I(dest), usually on the device.
  - The certificate is fetched from Amazon Trust Services (U(https://www.amazontrust.com/repository/)) or read
    from a local file on the target (I(src), for offline devices, for example Debian's
    C(/usr/share/ca-certificates/mozilla/Amazon_Root_CA_1.crt)), and its SHA-256 fingerprint is checked
    against the fingerprint pinned in this module. Nothing is written unless the fingerprint matches.
  - The file is written in a canonical PEM form, so a certificate from I(src) and from I(url) give the
    same file and a re-run changes nothing.
  - The VeriSign Class 3 root (C(VeriSign-Class 3-Public-Primary-Certification-Authority-G5.pem)) that old
    Greengrass V1 guides fetch signed only the legacy, non-ATS endpoints and is obsolete; AWS IoT's
    C(iot:Data-ATS) endpoints need an Amazon Root CA.
author:
  - edgeml.greengrass maintainers (@edgeml)
options:
  dest:
    description:
      - Where to write the PEM certificate, for example C(/greengrass/certs/root.ca.pem).
      - The parent directory must exist.
    type: path
    required: true
  ca:
    description:
      - Which Amazon root. C(1) is RSA and works with every client; C(3) is ECC.
    type: str
    choices: ["1", "3"]
    default: "1"
  src:
    description:
      - A file on the target host that holds the certificate (PEM, a single certificate). Used instead of I(url).
    type: path
  url:
    description:
      - Where to download the certificate from. Defaults to Amazon Trust Services'
        C(https://www.amazontrust.com/repository/AmazonRootCA1.pem) (or C(AmazonRootCA3.pem)).
      - Ignored when I(src) is set.
    type: str
  timeout:
    description:
      - Download timeout in seconds.
    type: int
    default: 30
  validate_certs:
    description:
      - Verify the TLS certificate of I(url). The pinned fingerprint is checked either way.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
    description: The certificate is fetched and verified, nothing is written.
  diff_mode:
    support: none
    description: Reports the fingerprint written in RV(sha256_fingerprint).
"""

EXAMPLES = r"""
- name: Amazon Root CA 1 for the Greengrass core, from Amazon Trust Services
  edgeml.greengrass.iot_root_ca:
    dest: /greengrass/certs/root.ca.pem
    owner: root
    group: root
    mode: "0644"

- name: Offline device, from Debian's ca-certificates package
  edgeml.greengrass.iot_root_ca:
    dest: /greengrass/certs/root.ca.pem
    src: /usr/share/ca-certificates/mozilla/Amazon_Root_CA_1.crt
    mode: "0644"

- name: The ECC root (Amazon Root CA 3)
  edgeml.greengrass.iot_root_ca:
    dest: /greengrass/certs/root.ca3.pem
    ca: "3"
"""

RETURN = r"""
dest:
  description: Path written.
  returned: always
  type: str
  sample: /greengrass/certs/root.ca.pem
ca:
  description: Which Amazon root was installed.
  returned: always
  type: str
  sample: "1"
sha256_fingerprint:
  description: SHA-256 fingerprint of the installed certificate (colon-separated upper-case hex).
  returned: always
  type: str
  sample: "8E:CD:E6:88:4F:3D:87:B1:12:5B:A3:1A:C3:FC:B1:3D:70:16:DE:7F:57:CC:90:4F:E1:CB:97:C6:AE:98:19:6E"
source:
  description: Where the certificate came from (the I(src) path or the URL).
  returned: always
  type: str
"""

import hashlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import ssl  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.common.text.converters import to_bytes, to_native  # noqa: E402
from ansible.module_utils.urls import fetch_url  # noqa: E402

# SHA-256 of the DER certificates published at https://www.amazontrust.com/repository/.
# Root CA 3's was checked against Debian's /usr/share/ca-certificates/mozilla/Amazon_Root_CA_3.crt.
AMAZON_ROOTS = {
    "1": {
        "url": "https://www.amazontrust.com/repository/AmazonRootCA1.pem",
        "sha256": "8E:CD:E6:88:4F:3D:87:B1:12:5B:A3:1A:C3:FC:B1:3D:70:16:DE:7F:57:CC:90:4F:E1:CB:97:C6:AE:98:19:6E",
    },
    "3": {
        "url": "https://www.amazontrust.com/repository/AmazonRootCA3.pem",
        "sha256": "18:CE:6C:FE:7B:F1:4E:60:B2:E3:47:B8:DF:E8:68:CB:31:D0:2E:BB:3A:DA:27:15:69:F5:03:43:B4:6D:B3:A4",
    },
}

PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----")


class NotVerified(ValueError):
    pass


def fingerprint(der):
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def verified_pem(text, ca, source):
    """Canonical PEM of the one certificate in text, if its fingerprint is the pinned one."""
    blocks = PEM_RE.findall(text)
    if len(blocks) != 1:
        raise NotVerified(
            "{0}: expected exactly one PEM certificate, found {1}; nothing was written".format(source, len(blocks))
        )
    pem = "-----BEGIN CERTIFICATE-----\n{0}\n-----END CERTIFICATE-----\n".format(blocks[0])
    try:
        der = ssl.PEM_cert_to_DER_cert(pem)
    except ValueError as exc:
        raise NotVerified("{0}: not a readable PEM certificate ({1}); nothing was written".format(source, exc)) from exc
    seen = fingerprint(der)
    expected = AMAZON_ROOTS[ca]["sha256"]
    if seen != expected:
        raise NotVerified(
            "{0}: this is not Amazon Root CA {1}: its SHA-256 fingerprint is {2}, expected {3}; "
            "nothing was written".format(source, ca, seen, expected)
        )
    return ssl.DER_cert_to_PEM_cert(der), seen


def read_source(module, ca):
    src = module.params["src"]
    if src:
        try:
            with open(src, "rb") as handle:
                return handle.read().decode("ascii", "replace"), src
        except (IOError, OSError) as exc:
            module.fail_json(msg="src: cannot read {0}: {1}".format(src, to_native(exc)))
    url = module.params["url"] or AMAZON_ROOTS[ca]["url"]
    response, info = fetch_url(module, url, timeout=module.params["timeout"])
    if info["status"] != 200 or response is None:
        module.fail_json(
            msg="url: cannot download {0}: HTTP {1} {2}; nothing was written".format(
                url, info["status"], info.get("msg", "")
            )
        )
    return response.read().decode("ascii", "replace"), url


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            ca=dict(type="str", choices=["1", "3"], default="1"),
            src=dict(type="path"),
            url=dict(type="str"),
            timeout=dict(type="int", default=30),
            validate_certs=dict(type="bool", default=True),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    dest = module.params["dest"]
    ca = module.params["ca"]

    parent = os.path.dirname(dest) or "."
    if not os.path.isdir(parent):
        module.fail_json(msg="dest: the directory {0} does not exist".format(parent))
    if os.path.isdir(dest):
        module.fail_json(msg="dest: {0} is a directory; give the certificate's file path".format(dest))

    text, source = read_source(module, ca)
    try:
        pem, seen = verified_pem(text, ca, source)
    except NotVerified as exc:
        module.fail_json(msg=str(exc))

    current = None
    if os.path.exists(dest):
        with open(dest, "rb") as handle:
            current = handle.read()
    changed = current != to_bytes(pem)
    if changed and not module.check_mode:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".iot_root_ca.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(pem))
        module.atomic_move(tmp, dest)

    file_args = module.load_file_common_arguments(module.params, path=dest)
    if os.path.exists(dest):
        changed = module.set_fs_attributes_if_different(file_args, changed)
    module.exit_json(changed=changed, dest=dest, ca=ca, sha256_fingerprint=seen, source=source)


if __name__ == "__main__":
    main()
