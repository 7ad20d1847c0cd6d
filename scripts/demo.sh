#!/usr/bin/env bash
# The main job on the embedded default, on a fresh Debian 12 machine, as root:
#   bash scripts/demo.sh            # provision 3 simulated devices end to end, then tear down
#   bash scripts/demo.sh --keep     # leave devices and endpoint running to explore
# It builds (once) the device image, starts the local AWS-compatible endpoint, boots 3 simulated
# edge devices, runs playbooks/site.yml against them exactly as a user runs it against real
# devices, then asks every device over MQTT through Greengrass and brings its detections and an annotated PNG back.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
# shellcheck source=scripts/setup.sh
source scripts/setup.sh

KEEP=false
DOWN=false
DEVICES=3
while (($#)); do
  case "$1" in
    --keep) KEEP=true ;;
    --devices) DEVICES="$2"; shift ;;
    --down) DOWN=true ;;
    *) echo "demo: unknown option $1 (expected --keep, --down or --devices N)" >&2; exit 2 ;;
  esac
  shift
done

STATE="$EDGEML_CACHE/demo"
OUT="$REPO_ROOT/out/demo"
BED=demo
mkdir -p "$STATE" "$OUT"

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
teardown() {
  python -m testbed.edge_devices down --bed "$BED" >/dev/null 2>&1 || true
  python -m testbed.aws_endpoint stop --state-dir "$STATE" >/dev/null 2>&1 || true
}
# A previous run killed half-way (or left running with --keep) must not break this one.
teardown
if $DOWN; then echo "demo: devices and endpoint stopped"; exit 0; fi
$KEEP || trap teardown EXIT

step "device image (cached after the first run)"
python -m testbed.edge_devices build-image

step "local AWS-compatible endpoint"
url="$(python -m testbed.aws_endpoint start --state-dir "$STATE")"
export AWS_ENDPOINT_URL="$url" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
echo "endpoint: $url"

step "boot $DEVICES simulated edge devices"
# --endpoints: where each device's (stand-in) Greengrass V2 nucleus finds this endpoint's IoT data plane.
python -m testbed.edge_devices up --bed "$BED" --count "$DEVICES" --prefix edge \
  --inventory "$STATE/devices.yml" --endpoints "$STATE/device_endpoints.json"

step "test-bed artefacts (stand-in Greengrass core archive, small detector model)"
python -m tests.demo_artefacts --out "$STATE/artefacts" > "$STATE/artefacts.yml"
cat "$STATE/artefacts.yml"

step "ansible-playbook playbooks/site.yml"
ansible-playbook playbooks/site.yml \
  -i inventories/local_testbed -i "$STATE/devices.yml" -e "@$STATE/artefacts.yml"

step "ansible-playbook playbooks/site.yml again: a second run must change nothing"
ansible-playbook playbooks/site.yml \
  -i inventories/local_testbed -i "$STATE/devices.yml" -e "@$STATE/artefacts.yml" | tee "$STATE/second-run.log"
if grep -E '^\S+ +: ok=[0-9]+ +changed=[1-9]' "$STATE/second-run.log"; then
  echo "demo: the second run changed something (above): site.yml is not idempotent" >&2
  exit 1
fi
echo "second run: changed=0 on every device"

step "smoke test: every device, V1 and V2, asked over MQTT through Greengrass (request in, detections out)"
# mqtt_client.json: the way to the bed's broker (its port, the bed's CA) in place of AWS IoT's endpoint.
ansible-playbook playbooks/smoke_test.yml \
  -i inventories/local_testbed -i "$STATE/devices.yml" -e "@$STATE/artefacts.yml" \
  -e "@$STATE/mqtt_client.json" -e "smoke_test_results_dir=$OUT"
ls -l "$OUT"

step "done"
$KEEP && echo "devices and endpoint left running; stop with: bash scripts/demo.sh --down" || true
