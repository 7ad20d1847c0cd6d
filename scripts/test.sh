#!/usr/bin/env bash
# Every test and quality gate of edgeml.greengrass, on a fresh Debian 12 machine, as root:
#   bash scripts/test.sh
# Does its own set-up (scripts/setup.sh) and is safe to run again. .ci/run calls exactly this.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
# shellcheck source=scripts/setup.sh
source scripts/setup.sh

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "ruff"
ruff check .
ruff format --check plugins tests bench

step "ansible-lint (production profile)"
ansible-lint --offline

step "ansible-test sanity (plugins, empty ignore files)"
bash scripts/sanity.sh

step "simulated device image"
python -m tests.testbed.edge_devices build-image

step "pytest: unit, test bed, modules against the local AWS endpoint, inference"
python -m pytest tests -p no:cacheprovider

step "molecule: every role scenario on simulated devices"
python -m tests.molecule_all

step "all tests and gates passed"
