#!/usr/bin/env bash
# Every test and quality gate of edgeml.greengrass, on a fresh Debian 12 machine, as root:
#   bash scripts/test.sh
# Does its own set-up (scripts/setup.sh) and is safe to run again. .ci/run calls exactly this.
# Every gate runs even when an earlier one failed, so one run shows every problem; the exit status
# is non-zero when any gate failed.
set -uo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT" || exit 2
# shellcheck source=scripts/setup.sh
source scripts/setup.sh || { echo "setup failed" >&2; exit 2; }

passed=()
failed=()
gate() {
  local name="$1"
  shift
  printf '\n=== %s (%s)\n' "$name" "$(date -u +%H:%M:%S)"
  local start=$SECONDS
  if "$@"; then
    passed+=("$name")
    printf '=== %s: passed in %ss\n' "$name" "$((SECONDS - start))"
  else
    failed+=("$name")
    printf '=== %s: FAILED in %ss\n' "$name" "$((SECONDS - start))"
  fi
}

# molecule installs this collection into ~/.ansible/collections, where ansible-lint would prefer that
# (possibly older) copy to the working tree linked in .collections: drop it, molecule puts it back.
rm -rf "$HOME/.ansible/collections/ansible_collections/edgeml/greengrass"

# A test run killed half-way may have left devices behind: clean those beds before starting.
python -m testbed.edge_devices down --stale >/dev/null 2>&1 || true

gate "ruff check" ruff check .
gate "ruff format" ruff format --check .
gate "ansible-lint (production profile)" ansible-lint --offline
gate "ansible-test sanity (plugins, no ignore files)" bash scripts/sanity.sh
gate "simulated device image" python -m testbed.edge_devices build-image
# Test files run on EDGEML_TEST_WORKERS workers (2 by default; 0 runs them in this process, without workers): the tests wait on
# devices, endpoints and subprocesses about half of the time, so two workers keep both cores busy. Files stay whole
# (--dist loadfile): their module-scoped devices are booted once. The slowest tests are listed for the next person
# who has to make the suite faster.
# pytest's own list of failed tests is repeated in the summary at the end: CI keeps only the tail of the output.
pytest_log="$(mktemp -t edgeml-pytest-XXXXXX.log)"
run_pytest() {
  python -m pytest tests -p no:cacheprovider -n "${EDGEML_TEST_WORKERS:-2}" --dist loadfile --durations=30 -rfE \
    2>&1 | tee "$pytest_log"
}
gate "pytest (unit, test bed, modules on the local AWS endpoint, roles on devices, inference)" run_pytest
gate "molecule (every role scenario on simulated devices)" python -m tests.molecule_all

printf '\n=== summary\n'
for name in "${passed[@]}"; do printf '  passed  %s\n' "$name"; done
for name in "${failed[@]}"; do printf '  FAILED  %s\n' "$name"; done
# (scripts/setup.sh leaves `set -e` on: a grep that finds no failed test must not end the script here.)
{ grep -E '^(FAILED|ERROR) ' "$pytest_log" || true; } | sed 's/^/    pytest: /' | cut -c1-400
rm -f "$pytest_log"
printf 'gates: %d passed, %d failed\n' "${#passed[@]}" "${#failed[@]}"
((${#failed[@]} == 0))
