"""The READMEs name the project's files as they are: every `roles/...`, `tests/...`, `testbed/...`, `plugins/...`,
`scripts/...`, `bench/...`, `playbooks/...` or `molecule/...` path written in backticks in a tracked Markdown file
exists (from the repository root or from the README's folder). Placeholders (`<role>`, `*`) are passed over.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CODE_FOLDERS = ("roles/", "tests/", "testbed/", "plugins/", "scripts/", "bench/", "playbooks/", "molecule/")


def _markdown_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [REPO_ROOT / name for name in listed]


def _named_paths(text: str):
    for token in re.findall(r"`([^`\s]+)`", text):
        path = re.sub(r":\d+(-\d+)?$", "", token.split("::")[0].rstrip(".,:;)"))
        if path.startswith(CODE_FOLDERS) and not any(mark in path for mark in "<>*{}$|"):
            yield token, path


def test_there_are_readmes_naming_paths():
    assert sum(1 for readme in _markdown_files() for _ in _named_paths(readme.read_text())) > 20


def test_every_path_a_readme_names_exists():
    missing = [
        f"{readme.relative_to(REPO_ROOT)}: `{token}`"
        for readme in _markdown_files()
        for token, path in _named_paths(readme.read_text())
        if not (REPO_ROOT / path).exists() and not (readme.parent / path).exists()
    ]
    assert not missing, "READMEs name paths that do not exist:\n" + "\n".join(missing)
