"""AWS API calls per device: first provisioning run vs re-run, and greengo's calls for the same group.

Runs one playbook twice against the test bed's local AWS endpoint (moto server) for N simulated
devices (localhost stand-ins: only the AWS side is measured). Per device the playbook does what
site.yml's controller side does for a Greengrass V1 core:

    edgeml.greengrass.iot_device_identity   thing, certificate from the device's CSR, policy
    edgeml.greengrass.greengrass_v1_group   core/function/resource/subscription definitions, group, role
    edgeml.greengrass.greengrass_v1_deployment  deploy and wait for the (test-bed) device to report Success

Calls are counted from the endpoint's own record of every request it received (moto's recorder, read
and classified by tests/e2e/fleet.py's ``AwsRequestLog``, which the fleet tests and
bench/provision_fleet.py use too: each request mapped to its API operation through botocore's service
models), so nothing in the modules is instrumented. Read = Get*/List*/Describe*/Head*; every other
operation is a write.

    python bench/aws_calls_per_device.py [--devices 3]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from testbed.aws_endpoint import LocalAwsEndpoint  # noqa: E402
from tests.e2e.fleet import READ_PREFIXES, recording_endpoint  # noqa: E402

# greengo 0.x (dzimine/greengo, greengo/greengo.py at commit 07553096b8dceef0e6169f4e92d4a73036c134f4),
# `greengo create` then `greengo deploy` for one core, one resource list, one Lambda (default role),
# one subscription list. Counted by reading GroupCommands.__init__/create/deploy and the helpers they
# call; (R) read, (W) write. Lambda + IAM calls are listed apart: this collection creates the Lambda with
# amazon.aws modules, outside the three modules measured here.
GREENGO_FIRST_RUN = [
    ("iot:DescribeEndpoint", "R", "GroupCommands.__init__ (create)"),
    ("greengrass:CreateGroup", "W", "create"),
    ("iot:CreateKeysAndCertificate", "W", "_create_cores (AWS makes the private key)"),
    ("iot:CreateThing", "W", "_create_cores"),
    ("iot:AttachThingPrincipal", "W", "_create_cores"),
    ("iot:CreatePolicy", "W", "_create_and_attach_thing_policy"),
    ("iot:AttachPrincipalPolicy", "W", "_create_and_attach_thing_policy"),
    ("greengrass:CreateCoreDefinition", "W", "_create_cores"),
    ("greengrass:CreateResourceDefinition", "W", "create_resources"),
    ("greengrass:GetResourceDefinitionVersion", "R", "create_resources"),
    ("greengrass:CreateFunctionDefinition", "W", "create_lambdas"),
    ("greengrass:GetFunctionDefinitionVersion", "R", "create_lambdas"),
    ("greengrass:CreateSubscriptionDefinition", "W", "create_subscriptions"),
    ("greengrass:GetSubscriptionDefinitionVersion", "R", "create_subscriptions"),
    ("greengrass:CreateGroupVersion", "W", "create_group_version"),
    ("iot:DescribeEndpoint", "R", "GroupCommands.__init__ (deploy)"),
    ("greengrass:CreateDeployment", "W", "deploy"),
    ("greengrass:GetDeploymentStatus", "R", "deploy (polls every 2 s; at least once)"),
]
GREENGO_LAMBDA_IAM = [
    ("iam:CreateRole", "W", "_create_default_lambda_role"),
    ("iam:PutRolePolicy", "W", "_create_default_lambda_role"),
    ("lambda:CreateFunction", "W", "create_lambdas"),
    ("lambda:CreateAlias", "W", "create_lambdas"),
]
# Re-run: `greengo create` refuses while its state file exists ("Previously created group exists. Remove
# before creating!") after the constructor's DescribeEndpoint, so it cannot converge a changed group;
# `greengo deploy` always makes a new deployment.
GREENGO_RERUN = [
    ("iot:DescribeEndpoint", "R", "GroupCommands.__init__ (create; then refuses)"),
    ("iot:DescribeEndpoint", "R", "GroupCommands.__init__ (deploy)"),
    ("greengrass:CreateDeployment", "W", "deploy (every time)"),
    ("greengrass:GetDeploymentStatus", "R", "deploy (at least once)"),
]


def is_read(operation: str) -> bool:
    return operation.split(":", 1)[-1].startswith(READ_PREFIXES)


def playbook(devices: int, workdir: Path) -> Path:
    account = "123456789012"
    tasks = [
        {
            "name": "Device key (stands in for the key made on the device)",
            "community.crypto.openssl_privatekey": {
                "path": f"{workdir}/{{{{ inventory_hostname }}}}.key",
                "type": "ECC",
                "curve": "secp256r1",
                "mode": "0600",
            },
        },
        {
            "name": "CSR",
            "community.crypto.openssl_csr_pipe": {
                "privatekey_path": f"{workdir}/{{{{ inventory_hostname }}}}.key",
                "common_name": "{{ inventory_hostname }}",
            },
            "register": "csr",
        },
        {
            "name": "Identity",
            "edgeml.greengrass.iot_device_identity": {"thing_name": "{{ inventory_hostname }}", "csr": "{{ csr.csr }}"},
            "register": "identity",
        },
        {
            "name": "Group",
            "edgeml.greengrass.greengrass_v1_group": {
                "name": "{{ inventory_hostname }}-group",
                "role_arn": f"arn:aws:iam::{account}:role/bench-greengrass",
                "core": {"thing_arn": "{{ identity.thing.arn }}", "certificate_arn": "{{ identity.certificate.arn }}"},
                "resources": [
                    {
                        "name": "ssd-model",
                        "resource_data_container": {
                            "s3_machine_learning_model_resource_data": {
                                "s3_uri": "s3://bench-models/ssd_512.tar.gz",
                                "destination_path": "/greengrass-ml/model",
                            }
                        },
                    }
                ],
                "functions": [
                    {
                        "function_arn": f"arn:aws:lambda:us-east-1:{account}:function:detector:live",
                        "pinned": True,
                        "memory_size": 1048576,
                        "timeout": 30,
                        "environment": {"resource_access_policies": [{"resource_id": "ssd-model"}]},
                    }
                ],
                "subscriptions": [
                    {
                        "source": f"arn:aws:lambda:us-east-1:{account}:function:detector:live",
                        "subject": "detections/{{ inventory_hostname }}",
                        "target": "cloud",
                    }
                ],
            },
        },
        {
            "name": "Deployment",
            "edgeml.greengrass.greengrass_v1_deployment": {"group_name": "{{ inventory_hostname }}-group"},
        },
    ]
    play = [
        {
            "name": "AWS side of provisioning, per device",
            "hosts": "devices",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "tasks": tasks,
        }
    ]
    path = workdir / "provision.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    inventory = workdir / "inventory.yml"
    hosts = {f"bench-device-{index:02d}": {} for index in range(1, devices + 1)}
    inventory.write_text(yaml.safe_dump({"devices": {"hosts": hosts}}))
    return path


def run_playbook(path: Path, endpoint: LocalAwsEndpoint) -> dict:
    env = dict(os.environ, **endpoint.environment(), ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(path.parent / "inventory.yml"), str(path)]
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"playbook failed (rc={proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    changed, task = collections.Counter(), None
    for line in proc.stdout.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") :].split("]", 1)[0]
        elif line.startswith("changed: ["):
            changed[task] += 1
    return {"changed_tasks": sum(changed.values()), "changed_by_task": dict(changed)}


def summarize(counts):
    reads = sum(n for op, n in counts.items() if is_read(op))
    return reads, sum(counts.values()) - reads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-aws-calls-") as tmp:
        workdir = Path(tmp)
        with recording_endpoint(workdir / "aws") as (endpoint, requests):
            request = urllib.request.Request(  # noqa: S310 - the local endpoint
                f"{endpoint.url}/moto-api/static/greengrass/deployment-outcome",
                data=json.dumps({"status": "Success"}).encode(),
                method="POST",
            )
            urllib.request.urlopen(request, timeout=10).close()  # noqa: S310
            path = playbook(args.devices, workdir)
            results = {}
            for phase in ("first run", "re-run"):
                mark = requests.mark()
                outcome = run_playbook(path, endpoint)
                counts = collections.Counter(f"{call.service}:{call.operation}" for call in requests.calls(since=mark))
                results[phase] = (counts, outcome)

    n = args.devices
    print(f"AWS API calls for {n} device(s): identity + Greengrass V1 group + deployment (moto request log)\n")
    print(f"{'run':<12}{'reads':>8}{'writes':>8}{'reads/device':>14}{'writes/device':>15}{'changed':>9}")
    for phase, (counts, outcome) in results.items():
        reads, writes = summarize(counts)
        print(f"{phase:<12}{reads:>8}{writes:>8}{reads / n:>14.1f}{writes / n:>15.1f}{outcome['changed_tasks']:>9}")

    for phase, (_counts, outcome) in results.items():
        print(f"{phase}: changed task results by task: {outcome['changed_by_task']}")

    for phase, (counts, _outcome) in results.items():
        print(f"\n{phase}, per operation (all devices):")
        for op, count in sorted(counts.items(), key=lambda item: (not is_read(item[0]), item[0])):
            print(f"  {'R' if is_read(op) else 'W'}  {op:<50}{count:>5}")

    def greengo_sums(rows):
        reads = sum(1 for _op, kind, _where in rows if kind == "R")
        return reads, len(rows) - reads

    print("\ngreengo (dzimine/greengo greengo/greengo.py @ 0755309, counted from its source), per device/group:")
    print(f"{'run':<40}{'reads':>8}{'writes':>8}")
    first_r, first_w = greengo_sums(GREENGO_FIRST_RUN)
    lambda_r, lambda_w = greengo_sums(GREENGO_LAMBDA_IAM)
    rerun_r, rerun_w = greengo_sums(GREENGO_RERUN)
    print(f"{'create + deploy (same scope as above)':<40}{first_r:>8}{first_w:>8}")
    print(f"{'  + its Lambda/IAM calls':<40}{first_r + lambda_r:>8}{first_w + lambda_w:>8}")
    print(f"{'re-run create + deploy':<40}{rerun_r:>8}{rerun_w:>8}")
    print("  (greengo's deploy polls GetDeploymentStatus every 2 s: reads above are its minimum;")
    print("   its re-run of create does nothing, so a changed group cannot be converged without remove)")

    rerun_writes = summarize(results["re-run"][0])[1]
    print(f"\nre-run write calls: {rerun_writes} (target 0)")
    return 0 if rerun_writes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
