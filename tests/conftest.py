"""Shared pytest fixtures: the local AWS endpoint and the collection's environment."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from testbed.aws_endpoint import LocalAwsEndpoint

REPO_ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["testbed.pytest_plugin"]


@pytest.fixture(scope="session")
def aws_endpoint(tmp_path_factory):
    """One moto server (with the test bed's fixes) for the whole session, on a free loopback port."""
    log = tmp_path_factory.mktemp("aws") / "aws_endpoint.log"
    with LocalAwsEndpoint(log_path=log) as endpoint:
        yield endpoint


@pytest.fixture
def clean_aws(aws_endpoint):
    """The endpoint emptied before the test, so counts of remaining resources mean something."""
    aws_endpoint.reset()
    return aws_endpoint


@pytest.fixture
def boto_session(aws_endpoint):
    env = aws_endpoint.environment()
    return boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


@pytest.fixture
def aws_client(boto_session, aws_endpoint):
    def make(service: str):
        return boto_session.client(service, endpoint_url=aws_endpoint.url)

    return make


@pytest.fixture
def ansible_env(aws_endpoint):
    """Environment for ansible-playbook runs: this repo's ansible.cfg plus the endpoint's variables."""
    env = dict(os.environ)
    env.update(aws_endpoint.environment())
    env["ANSIBLE_CONFIG"] = str(REPO_ROOT / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    return env
