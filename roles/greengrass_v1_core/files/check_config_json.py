"""Checks a Greengrass V1 core's config.json before it replaces the old one (run by the greengrass_v1_core role's
``template: validate:`` on the device, with the device's python3: standard library only, Python 3.5+).

Exits non-zero naming every problem: a missing or mistyped field, a useSystemd other than yes/no, a crypto path that
is not a file:/// URL. Usage: python3 check_config_json.py CONFIG_JSON
"""

import json
import sys

CORE_THING_STRINGS = ("caPath", "certPath", "keyPath", "thingArn", "iotHost", "ggHost")
CRYPTO_PATHS = (
    "crypto.caPath",
    "crypto.principals.IoTCertificate.privateKeyPath",
    "crypto.principals.IoTCertificate.certificatePath",
    "crypto.principals.SecretsManager.privateKeyPath",
)


def problems_of(doc):
    problems = []

    def need(path, kind):
        node = doc
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                problems.append(path + ": missing")
                return None
            node = node[part]
        if not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
            problems.append(path + ": expected " + kind.__name__)
            return None
        return node

    for key in CORE_THING_STRINGS:
        if not need("coreThing." + key, str):
            problems.append("coreThing." + key + ": must be a non-empty string")
    need("coreThing.keepAlive", int)
    if need("runtime.cgroup.useSystemd", str) not in ("yes", "no"):
        problems.append("runtime.cgroup.useSystemd: expected yes or no")
    need("managedRespawn", bool)
    for path in CRYPTO_PATHS:
        if not str(need(path, str)).startswith("file:///"):
            problems.append(path + ": expected a file:/// URL")
    return sorted(set(problems))


def main():
    with open(sys.argv[1]) as config:
        problems = problems_of(json.load(config))
    if problems:
        sys.exit("config.json rejected: " + "; ".join(problems))


if __name__ == "__main__":
    main()
