#!/usr/bin/env bash
# ansible-test insists on running from .../ansible_collections/<ns>/<name>, with the collection's
# dependencies beside it: copy the tracked plugin files into such a tree and test there.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/edgeml/greengrass"
mkdir -p "$dest"
cd "$REPO_ROOT"
git ls-files -co --exclude-standard -- galaxy.yml meta plugins tests/sanity | rsync -a --files-from=- . "$dest/"
for dep in amazon.aws community.crypto; do
  src="$(python -c "import ansible_collections.$dep as c; print(list(c.__path__)[0])")"
  mkdir -p "$work/ansible_collections/${dep%.*}"
  ln -s "$src" "$work/ansible_collections/${dep/.//}"
done
# ansible-test fetches its pip bootstrap script from a host this machine cannot reach: provide it.
pip_version="$(python -c 'from ansible_test._internal.python_requirements import PIP_VERSION as v; print(v)' 2>/dev/null || echo 24.2)"
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "${get_pip%/*}"
cmp -s "$REPO_ROOT/scripts/ansible_test_get_pip.py" "$get_pip" || cp "$REPO_ROOT/scripts/ansible_test_get_pip.py" "$get_pip"

cd "$dest"
git init -q && git add -A
ansible-test sanity --python 3.11 --color no plugins/ "$@"
