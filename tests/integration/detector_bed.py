"""The bed both detector roles' integration tests run in: local hosts (the controller's venv as their Python, which
has boto3 and greengrasssdk), one play importing the role, its AWS modules pointed at the test's endpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def write_detector_bed(
    tmp_path: Path, aws_env: dict, hosts: dict[str, dict], group_vars: dict, tasks: list[dict], play_name: str
) -> tuple[Path, Path]:
    """Write the inventory (``hosts``: name to host vars, in group edge_devices) and the playbook (``tasks``, then
    the role, imported by the caller's last task); return their paths."""
    aws = {
        "endpoint_url": aws_env["AWS_ENDPOINT_URL"],
        "region": aws_env["AWS_REGION"],
        "access_key": aws_env["AWS_ACCESS_KEY_ID"],
        "secret_key": aws_env["AWS_SECRET_ACCESS_KEY"],
    }
    inventory = {
        "edge_devices": {
            "hosts": hosts,
            "vars": {"ansible_python_interpreter": sys.executable, **group_vars},
        }
    }
    playbook = [
        {
            "name": play_name,
            "hosts": "edge_devices",
            "gather_facts": False,
            "module_defaults": {"group/edgeml.greengrass.aws": aws, "group/amazon.aws.aws": aws},
            "tasks": tasks,
        }
    ]
    inventory_path = tmp_path / "inventory.yml"
    inventory_path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    playbook_path = tmp_path / "playbook.yml"
    playbook_path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    return inventory_path, playbook_path
