"""The test bed's local AWS-compatible endpoint: moto's server on 127.0.0.1, with AWS IoT Core's data plane.

Started on a free port, reached by boto3 and by this collection's modules only
through the standard ``AWS_ENDPOINT_URL`` / ``endpoint_url`` option with dummy
credentials, and stopped afterwards. The same process serves AWS IoT Core's MQTT
broker (TLS, device certificates, policy evaluation; testbed/iot_data_plane/)
on a second free port: ``LocalAwsEndpoint.data_plane()`` says where, and which root
CA its clients trust.

    python -m testbed.aws_endpoint start --state-dir DIR   # prints the URL
    python -m testbed.aws_endpoint stop --state-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 - moto accepts any value
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class EndpointError(RuntimeError):
    pass


def aws_module_options(environment: dict[str, str]) -> dict[str, str]:
    """endpoint_url, region and credentials as module options, from an endpoint's environment variables."""
    return {
        "endpoint_url": environment["AWS_ENDPOINT_URL"],
        "region": environment["AWS_REGION"],
        "access_key": environment["AWS_ACCESS_KEY_ID"],
        "secret_key": environment["AWS_SECRET_ACCESS_KEY"],
    }


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class LocalAwsEndpoint:
    """A moto server process; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        mqtt_port: int | None = None,
    ):
        self.host = host
        self.port = port
        self.mqtt_port = mqtt_port
        self.credentials_port: int | None = None
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """Variables that point boto3, the AWS CLI and amazon.aws modules at this endpoint."""
        return {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": self.url}

    def module_options(self) -> dict[str, str]:
        """The AWS options of this collection's (and amazon.aws's) modules for this endpoint, for module_defaults."""
        return aws_module_options(self.environment())

    def client(self, service: str):
        """A boto3 client of this endpoint (the bed's dummy credentials and region)."""
        import boto3

        env = self.environment()
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def start(self, timeout: float = 30.0) -> LocalAwsEndpoint:
        if self.port is None:
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            raise EndpointError(
                f"port {self.port} on {self.host} is already in use; pick another port or leave it out "
                "to get a free one (a leftover endpoint from a killed run can be stopped with "
                "`python -m testbed.aws_endpoint stop --state-dir DIR`)"
            )
        if self.mqtt_port is None:
            self.mqtt_port = free_port(self.host)
        self.credentials_port = free_port(self.host)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "testbed.moto_server_with_fixes",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--mqtt-port",
                str(self.mqtt_port),
                "--credentials-port",
                str(self.credentials_port),
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EndpointError(f"the local AWS endpoint exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=2):  # noqa: S310
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise EndpointError(f"the local AWS endpoint did not answer on {self.url} within {timeout:.0f}s")

    def data_plane(self) -> dict:
        """{"mqtt": {...}, "credentials": {...}, "root_ca_pem"}: where the IoT data plane listens (host, port)
        and the CA its server certificates chain to."""
        with urllib.request.urlopen(f"{self.url}/moto-api/static/iot-data-plane", timeout=10) as answer:  # noqa: S310
            return json.load(answer)

    def device_endpoints(self) -> dict:
        """What a simulated device's stand-in nucleus reads from /etc/edgeml-testbed/endpoints.json
        (testbed/standins/greengrass_v2_nucleus/agent): where the AWS host names it is configured with are served
        in this bed (the MQTT broker; one HTTPS port for the credential provider and the Greengrass data plane;
        S3 at the endpoint itself) and the CA their certificates chain to. The devices share the host's network,
        so the loopback addresses reach the bed.

        ``lambda_runtimes`` is for the stand-in V1 core (testbed/standins/greengrass_v1_core): a V1 core runs a
        python3.7/python3.8 Lambda with that executable from PATH, which the bed's Debian 12 devices do not have
        (field notes), so the bed names the interpreter of the inference runtime the roles install
        (``inference_runtime_venv``'s default), the one the Lambda's imports are installed for."""
        data_plane = self.data_plane()
        lambda_python = "/opt/edgeml/inference-venv/bin/python"
        return {
            "mqtt": data_plane["mqtt"],
            "https": data_plane["credentials"],
            "s3": self.url,
            "root_ca_pem": data_plane["root_ca_pem"],
            "lambda_runtimes": {"python3.7": lambda_python, "python3.8": lambda_python},
        }

    def mqtt_client_vars(self, folder: Path) -> dict:
        """Extra vars for playbooks/smoke_test.yml: connect to this bed's broker (its loopback port, the AWS host
        name as TLS server name) and trust the bed's CA, written to ``folder/root_ca.pem``."""
        data_plane = self.data_plane()
        root_ca = folder / "root_ca.pem"
        root_ca.write_text(data_plane["root_ca_pem"])
        return {
            "smoke_test_mqtt_address": data_plane["mqtt"]["host"],
            "smoke_test_mqtt_port": data_plane["mqtt"]["port"],
            "smoke_test_root_ca": str(root_ca),
        }

    def reset(self) -> None:
        """Forget every resource (moto's reset API); cheaper than a restart between tests."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310
            pass

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self) -> LocalAwsEndpoint:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _state_file(state_dir: Path) -> Path:
    return state_dir / "aws_endpoint.json"


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start or stop the test bed's local AWS endpoint.")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--state-dir", type=Path, required=True, help="where the pid, URL and log are kept")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    state = _state_file(args.state_dir)

    if args.action == "stop" or state.exists():
        # A killed run may have left a server behind: stop it before anything else.
        if state.exists():
            old = json.loads(state.read_text())
            try:
                os.killpg(old["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
            state.unlink()
        if args.action == "stop":
            return 0

    endpoint = LocalAwsEndpoint(port=args.port, log_path=args.state_dir / "aws_endpoint.log")
    try:
        endpoint.start()
    except EndpointError as exc:
        print(f"aws_endpoint: {exc}", file=sys.stderr)
        return 2
    state.write_text(json.dumps({"pid": endpoint.process.pid, "url": endpoint.url, "mqtt_port": endpoint.mqtt_port}))
    # For `edge_devices up --endpoints`: where the devices' stand-in nucleus finds this endpoint.
    (args.state_dir / "device_endpoints.json").write_text(json.dumps(endpoint.device_endpoints()))
    # For playbooks/smoke_test.yml (-e @mqtt_client.json): how a client on the controller reaches the broker.
    (args.state_dir / "mqtt_client.json").write_text(json.dumps(endpoint.mqtt_client_vars(args.state_dir)))
    # Detach: the server keeps running after this CLI exits; `stop` ends it.
    endpoint.process = None
    print(endpoint.url)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
