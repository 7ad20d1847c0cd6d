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
site="$(python -c 'import ansible_collections, os; print(os.path.dirname(ansible_collections.__file__))')"
for dep in amazon/aws community/crypto; do
  mkdir -p "$work/ansible_collections/${dep%/*}"
  ln -s "$site/ansible_collections/$dep" "$work/ansible_collections/$dep"
done
cd "$dest"
git init -q && git add -A
ansible-test sanity --python 3.11 --color no plugins/ "$@"
