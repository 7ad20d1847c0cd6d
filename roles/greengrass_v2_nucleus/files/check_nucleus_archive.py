"""Reads the nucleus archive as it arrived on the device (run by the greengrass_v2_nucleus role's install phase with
the device's python3, standard library only, Python 3.6+: nothing else is installed yet).

Prints {"sha256", "jar", "version"} as JSON for the assert that follows: the archive's sha256, whether it holds
lib/Greengrass.jar, and conf/recipe.yaml's ComponentVersion ("" when absent). An archive that is not a zip gives
jar false. Usage: python3 check_nucleus_archive.py ARCHIVE
"""

import hashlib
import json
import re
import sys
import zipfile

COMPONENT_VERSION = re.compile(r"^ComponentVersion:\s*['\"]?([^'\"\s]+)", re.M)


def read_archive(path):
    with open(path, "rb") as stream:
        found = {"sha256": hashlib.sha256(stream.read()).hexdigest(), "jar": False, "version": ""}
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            found["jar"] = "lib/Greengrass.jar" in names
            if "conf/recipe.yaml" in names:
                match = COMPONENT_VERSION.search(archive.read("conf/recipe.yaml").decode())
                found["version"] = match.group(1) if match else ""
    except zipfile.BadZipFile:
        pass
    return found


if __name__ == "__main__":
    print(json.dumps(read_archive(sys.argv[1])))
