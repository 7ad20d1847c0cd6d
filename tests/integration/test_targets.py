"""Run every integration target against the local AWS endpoint with ansible-playbook.

A target is ``tests/integration/targets/<name>/`` with ``tasks/main.yml`` (laid out like a role, as
in amazon.aws: ``defaults/``, ``files/``, ``vars/`` work too). Each is played as a role from a
generated playbook on localhost (connection local) with ``module_defaults`` pointing this
collection's and amazon.aws's AWS modules at the session's endpoint, which is emptied first.

Variables every target gets:
  output_dir        an empty directory of the test's own
  http_root         an empty directory served over HTTP for the test...
  http_url          ...at this URL (http://127.0.0.1:<port>), for modules that download
  aws_endpoint_url  the endpoint, and aws_region

A target whose ``aliases`` file has a line ``disabled`` is skipped, saying so.
"""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from testbed.aws_endpoint import aws_module_options

TARGETS_DIR = Path(__file__).resolve().parent / "targets"
PLAYBOOK_TIMEOUT_S = 1200


def discover_targets() -> list[Path]:
    if not TARGETS_DIR.is_dir():
        return []
    return sorted(p for p in TARGETS_DIR.iterdir() if (p / "tasks" / "main.yml").is_file())


def aliases(target: Path) -> set[str]:
    path = target / "aliases"
    if not path.is_file():
        return set()
    return {line.split("#", 1)[0].strip() for line in path.read_text().splitlines()} - {""}


def test_targets_exist():
    assert discover_targets(), f"no integration target under {TARGETS_DIR}"


@pytest.fixture
def http_server(tmp_path):
    """A plain HTTP server on 127.0.0.1 serving an empty directory the target fills (test fixture)."""
    root = tmp_path / "http_root"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def generated_playbook(target: Path, endpoint_env: dict[str, str]) -> list[dict]:
    aws = aws_module_options(endpoint_env)
    return [
        {
            "name": f"integration target {target.name}",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            # The controller's venv has boto3; a discovered /usr/bin/python3 would not.
            "vars": {"ansible_python_interpreter": sys.executable},
            "module_defaults": {"group/edgeml.greengrass.aws": aws, "group/amazon.aws.aws": aws},
            "roles": [{"role": str(target)}],
        }
    ]


@pytest.mark.aws
@pytest.mark.parametrize("target", discover_targets(), ids=lambda p: p.name)
def test_target(target, clean_aws, ansible_env, tmp_path, http_server):
    if "disabled" in aliases(target):
        pytest.skip(f"{target.name}: marked disabled in its aliases file")
    http_root, http_url = http_server
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(yaml.safe_dump(generated_playbook(target, clean_aws.environment()), sort_keys=False))
    extra_vars = {
        "output_dir": str(output_dir),
        "http_root": str(http_root),
        "http_url": http_url,
        "aws_endpoint_url": clean_aws.url,
        "aws_region": clean_aws.environment()["AWS_REGION"],
    }
    # The endpoint and credentials reach the modules only through module_defaults, which is what
    # this proves works (a module missing from the action group would go to real AWS and fail).
    env = {k: v for k, v in ansible_env.items() if not k.startswith("AWS_")}
    env.update(ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_NOCOLOR="1", AWS_CONFIG_FILE="/dev/null")
    env.update(AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            str(playbook),
            "-e",
            json.dumps(extra_vars),
        ],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=PLAYBOOK_TIMEOUT_S,
        check=False,
    )
    log = tmp_path / "ansible-playbook.log"
    log.write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (
        f"target {target.name} failed (rc={proc.returncode}); full log: {log}\n" + (proc.stdout + proc.stderr)[-8000:]
    )
    assert "failed=0" in proc.stdout, f"target {target.name}: no clean play recap; log: {log}"
