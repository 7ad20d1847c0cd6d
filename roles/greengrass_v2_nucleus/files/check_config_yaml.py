"""Checks a Greengrass V2 nucleus's config.yaml before it replaces the old one (run by the greengrass_v2_nucleus
role's ``template: validate:`` on the device, with the system python3 and its python3-yaml, Python 3.6+).

Exits non-zero naming every problem: not YAML, a missing or empty field of AWS's manual-provisioning config.yaml,
a relative path, a componentType other than NUCLEUS. Usage: python3 check_config_yaml.py CONFIG_YAML
"""

import sys

import yaml

SYSTEM_PATHS = ("certificateFilePath", "privateKeyPath", "rootCaPath", "rootpath")
NUCLEUS = ("services", "aws.greengrass.Nucleus")
NUCLEUS_CONFIGURATION = ("awsRegion", "iotRoleAlias", "iotDataEndpoint", "iotCredEndpoint")


def problems_of(doc):
    problems = []

    def need(path):
        node = doc
        for part in path:
            if not isinstance(node, dict) or part not in node:
                problems.append(".".join(path) + ": missing")
                return None
            node = node[part]
        if not isinstance(node, str) or not node:
            problems.append(".".join(path) + ": expected a non-empty string")
            return None
        return node

    for key in SYSTEM_PATHS:
        value = need(("system", key))
        if value and not value.startswith("/"):
            problems.append("system." + key + ": expected an absolute path")
    need(("system", "thingName"))
    if need(NUCLEUS + ("componentType",)) not in (None, "NUCLEUS"):
        problems.append("services.aws.greengrass.Nucleus.componentType: expected NUCLEUS")
    need(NUCLEUS + ("version",))
    for key in NUCLEUS_CONFIGURATION:
        need(NUCLEUS + ("configuration", key))
    return problems


def main(path):
    try:
        with open(path) as stream:
            doc = yaml.safe_load(stream)
    except yaml.YAMLError as error:
        sys.exit("config.yaml rejected: not YAML: " + str(error))
    problems = problems_of(doc)
    if problems:
        sys.exit("config.yaml rejected: " + "; ".join(problems))


if __name__ == "__main__":
    main(sys.argv[1])
