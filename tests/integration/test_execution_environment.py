"""execution-environment.yml: the build context ansible-builder makes, and the collection running from what the
image would hold (tests/execution_environment.py: no container engine here, so the image's collections and Python
are made on this machine from the same inputs). site.yml itself runs from this environment, through ansible-runner,
in the third run of tests/e2e/test_site_fleet.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.execution_environment import REPO_ROOT, build, collection_version, definition
from tests.execution_environment import _dependency_collection as dependency_collection

pytestmark = pytest.mark.aws


@pytest.fixture(scope="module")
def ee(tmp_path_factory):
    return build(tmp_path_factory.mktemp("ee"))


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[name.lower()] = version
    return pins


def test_the_build_context_installs_the_collection_and_the_versions_the_tests_run(ee):
    dockerfile = (ee.context / "Dockerfile").read_text()
    assert "ansible-galaxy collection install" in dockerfile and "introspect" in dockerfile, dockerfile
    assert 'ANSIBLE_INSTALL_REFS="ansible-core==2.19.14 ansible-runner==2.4.3"' in dockerfile
    [archive] = (ee.context / "_build" / "collections").glob("edgeml-greengrass-*.tar.gz")
    galaxy = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
    assert archive.name == f"edgeml-greengrass-{galaxy['version']}.tar.gz"

    collections = yaml.safe_load((ee.context / "_build" / "requirements.yml").read_text())["collections"]
    pinned = {item["name"]: item.get("version") for item in collections if item.get("type") != "file"}
    # Each dependency the collection declares, at the version the tests run with (the pinned ansible package's).
    assert set(pinned) == set(galaxy["dependencies"]), pinned
    assert pinned == {name: collection_version(dependency_collection(name)) for name in pinned}
    assert [item["name"] for item in collections if item.get("type") == "file"] == [
        f"/build/collections/{archive.name}"
    ]
    # Python pins of the definition: the ones constraints.txt tests.
    constraints = _pins(REPO_ROOT / "constraints.txt")
    for name, version in _pins(ee.context / "_build" / "requirements.txt").items():
        assert constraints.get(name) == version, (name, version)
    for name in ("ansible_core", "ansible_runner"):
        package, version = definition()["dependencies"][name]["package_pip"].split("==")
        assert constraints[package] == version, (package, version)


def test_introspection_reads_the_collections_python_and_system_needs(ee):
    names = {
        line.split("#")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for line in ee.introspected_pip
    }
    assert {"boto3", "botocore", "paho-mqtt", "cryptography"} <= names, ee.introspected_pip
    ours = [line for line in ee.introspected_pip if "edgeml.greengrass" in line]
    assert ours, f"nothing introspected from edgeml.greengrass: {ee.introspected_pip}"
    assert any(line.startswith("openssh-client [platform:dpkg]") for line in ee.introspected_bindep), (
        ee.introspected_bindep
    )


def test_the_collection_runs_from_the_environments_python(ee, clean_aws, aws_client, tmp_path):
    aws_client("iot").create_thing_group(thingGroupName="ee-fleet")
    playbook = tmp_path / "ee.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "module_defaults": {"group/edgeml.greengrass.aws": clean_aws.module_options()},
                    "tasks": [
                        {"name": "interpreter", "ansible.builtin.command": "python -c 'import sys; print(sys.prefix)'"},
                        {
                            "name": "info",
                            "edgeml.greengrass.greengrass_v2_info": {"thing_group": "ee-fleet"},
                            "register": "info",
                        },
                        {"name": "show", "ansible.builtin.debug": {"var": "info"}},
                    ],
                }
            ]
        )
    )
    env = ee.environment(dict(clean_aws.environment(), PATH="/usr/bin:/bin", HOME=str(tmp_path)))
    done = subprocess.run(
        [str(ee.bin / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook), "-v"],
        capture_output=True,
        text=True,
        env=dict(env, ANSIBLE_PYTHON_INTERPRETER=str(ee.bin / "python")),
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f'"stdout": "{ee.venv}"' in done.stdout, done.stdout[-3000:]
    assert '"deployments": []' in done.stdout and '"core_devices": []' in done.stdout, done.stdout[-3000:]
    # The collection came from the archive installed in the environment, not from this checkout.
    listed = subprocess.run(
        [str(ee.bin / "ansible-galaxy"), "collection", "list", "edgeml.greengrass", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert list(json.loads(listed.stdout)) == [str(ee.collections / "ansible_collections")], listed.stdout
    imports = subprocess.run(
        [str(ee.bin / "python"), "-c", "import boto3, botocore, paho.mqtt.client, cryptography, ansible_runner"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imports.returncode == 0, imports.stderr
    runner = subprocess.run([str(ee.bin / "ansible-runner"), "--version"], capture_output=True, text=True, timeout=60)
    assert runner.stdout.strip() == "2.4.3", runner
    assert sys.prefix != str(ee.venv)
