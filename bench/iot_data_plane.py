"""The test bed's AWS IoT Core data plane under a fleet: start time, broker memory, message round trips.

Starts the local AWS endpoint (moto with the MQTT broker and the credential provider in its process)
several times and reports the median time until it answers; then, on one endpoint, registers N devices
the way AWS IoT does (thing, certificate from the device's CSR, a policy scoped to the device), connects
N real MQTT clients (paho-mqtt, mutual TLS) at once, and reports the endpoint process's resident memory
before and after, the time to connect them all, and the median and p95 round trip of a QoS 1 message
each device publishes to its own topic and receives back (subscribe, publish, PUBACK, delivery).

    python bench/iot_data_plane.py [--devices 16] [--starts 5] [--messages 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from testbed.aws_endpoint import LocalAwsEndpoint  # noqa: E402
from testbed.iot_data_plane.client import DataPlaneClient  # noqa: E402

ARN = "arn:aws:iot:us-east-1:123456789012:"


def rss_mib(pid: int) -> float:
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def register(iot, folder: Path, thing: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)])
    )
    pem = csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    cert = iot.create_certificate_from_csr(certificateSigningRequest=pem, setAsActive=True)
    iot.create_thing(thingName=thing)
    iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": ARN + "client/" + thing},
            {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": ARN + "topic/%s/*" % thing},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": ARN + "topicfilter/%s/*" % thing},
        ],
    }
    iot.create_policy(policyName=thing + "-policy", policyDocument=json.dumps(document))
    iot.attach_policy(policyName=thing + "-policy", target=cert["certificateArn"])
    cert_file, key_file = folder / (thing + ".pem"), folder / (thing + ".key")
    cert_file.write_text(cert["certificatePem"])
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20, help="round trips per device")
    args = parser.parse_args()

    starts = []
    for _ in range(args.starts):
        began = time.monotonic()
        with LocalAwsEndpoint():
            starts.append(time.monotonic() - began)
    print(
        "endpoint start (moto + MQTT broker + credential provider), %d starts: median %.2f s, max %.2f s"
        % (len(starts), statistics.median(starts), max(starts))
    )

    with tempfile.TemporaryDirectory() as tmp, LocalAwsEndpoint() as endpoint:
        folder = Path(tmp)
        iot = endpoint.client("iot")
        info = endpoint.data_plane()
        root_ca = folder / "root.ca.pem"
        root_ca.write_text(info["root_ca_pem"])
        host = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
        things = ["edge-%02d" % n for n in range(1, args.devices + 1)]
        files = {thing: register(iot, folder, thing) for thing in things}
        idle = rss_mib(endpoint.process.pid)

        began = time.monotonic()
        clients = []
        for thing in things:
            client = DataPlaneClient(info, host, thing, str(files[thing][0]), str(files[thing][1]), str(root_ca))
            outcome = client.connect()
            if not outcome.ok:
                print("%s did not connect: %s" % (thing, outcome))
                return 1
            clients.append((thing, client))
        connect_all = time.monotonic() - began
        for thing, client in clients:
            assert client.subscribe(thing + "/echo").ok
        connected = rss_mib(endpoint.process.pid)

        round_trips = []
        for _ in range(args.messages):
            for thing, client in clients:
                began = time.monotonic()
                assert client.publish(thing + "/echo", b"x" * 256).ok
                message = client.receive(timeout=10)
                assert message is not None and message[0] == thing + "/echo"
                round_trips.append(time.monotonic() - began)
        after = rss_mib(endpoint.process.pid)
        for _thing, client in clients:
            client.close()

    round_trips.sort()
    p95 = round_trips[int(0.95 * (len(round_trips) - 1))]
    print("endpoint process RSS: %.1f MiB with %d devices registered" % (idle, args.devices))
    print("  %.1f MiB with them all connected and subscribed (+%.1f)" % (connected, connected - idle))
    print("  %.1f MiB after %d messages" % (after, len(round_trips)))
    print("connect %d devices one after another (TLS + CONNECT + policy check): %.2f s, %.0f ms per device"
          % (args.devices, connect_all, 1000 * connect_all / args.devices))  # fmt: skip
    print("QoS 1 round trip (publish, PUBACK, delivery to the same device): median %.1f ms, p95 %.1f ms over %d"
          % (1000 * statistics.median(round_trips), 1000 * p95, len(round_trips)))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
