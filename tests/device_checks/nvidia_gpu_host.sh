#!/usr/bin/env bash
# A check for a lent NVIDIA GPU machine (no CI runs it: CI has no GPU). Carries ansible-core as
# wheels in .whl/ (see the device tool's README), then runs nvidia_driver_cuda's detection against
# the real host and records what the kernel, the driver and the role each see into $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
mkdir -p /tmp/coll/ansible_collections/edgeml
ln -sfn "$PWD" /tmp/coll/ansible_collections/edgeml/greengrass
export ANSIBLE_COLLECTIONS_PATH=/tmp/coll ANSIBLE_LOCALHOST_WARNING=false
{
  echo "## nvidia-smi -L"; nvidia-smi -L
  echo "## os"; grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release; uname -rm
  echo "## /sys/bus/pci/devices"; ls /sys/bus/pci/devices 2>&1 | head -20
  echo "## PCI vendor:class pairs"
  for d in /sys/bus/pci/devices/*; do [ -e "$d/vendor" ] && echo "$(basename "$d") $(cat "$d/vendor") $(cat "$d/class")"; done
  echo "## /dev/nvidia*"; ls -la /dev/nvidia* 2>&1
  echo "## /proc/driver/nvidia/gpus"; ls /proc/driver/nvidia/gpus 2>&1
  echo "## lspci"; command -v lspci || echo "no lspci"
} 2>&1 | tee "$OUT/host.txt"
ansible-playbook tests/device_checks/nvidia_gpu_host.yml 2>&1 | tee "$OUT/playbook.txt"
echo "## role detection"; cat "$OUT/detection.json"
