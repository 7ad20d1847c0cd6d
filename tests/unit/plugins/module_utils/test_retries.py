"""The collection's one wrapper of AWS calls: the throttling and transient codes IoT, Greengrass, Lambda and S3
answer with are retried, and what remains is raised and reported naming the operation.

Real botocore ClientErrors, as botocore raises them for each service's error response; the decorated function
stands for the AWS call (no AWS is needed to test which answers are retried).
"""

from __future__ import annotations

import pytest
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import (
    RETRYABLE_ERROR_CODES,
    AWSCallError,
    aws_call,
    aws_retry,
    fail_aws_call,
)
from botocore.exceptions import ClientError, EndpointConnectionError


def failing(codes):
    calls = []

    @aws_retry(retries=4, delay=0.01, max_delay=0.02)
    def call():
        calls.append(1)
        if len(calls) <= len(codes):
            raise ClientError({"Error": {"Code": codes[len(calls) - 1], "Message": "x"}}, "Operation")
        return "done"

    return call, calls


@pytest.mark.parametrize("code", RETRYABLE_ERROR_CODES + ("Throttling", "TooManyRequestsException"))
def test_throttling_and_transient_codes_are_retried(code):
    call, calls = failing([code, code])
    assert call() == "done" and len(calls) == 3


@pytest.mark.parametrize(
    "code", ["ResourceAlreadyExistsException", "InvalidRequestException", "LimitExceededException", "AccessDenied"]
)
def test_client_errors_and_quotas_are_not_retried(code):
    call, calls = failing([code])
    with pytest.raises(ClientError):
        call()
    assert len(calls) == 1


def test_retries_end_with_the_error():
    call, calls = failing(["ThrottlingException"] * 10)
    with pytest.raises(ClientError):
        call()
    assert len(calls) == 4


def client_error(code, message="x", status=400):
    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "CreateGroupVersion")


def test_aws_call_retries_then_names_the_operation():
    calls = []

    @aws_call("create group version", retries=3, delay=0.01, max_delay=0.02)
    def create(answers):
        calls.append(1)
        raise answers[len(calls) - 1]

    with pytest.raises(AWSCallError) as raised:
        create([client_error("ThrottlingException"), client_error("BadRequestException", "no such definition")])
    assert len(calls) == 2  # retried once, then the bad request is not retried
    assert raised.value.message == "Failed to create group version"
    assert "BadRequestException" in str(raised.value) and "no such definition" in str(raised.value)
    assert isinstance(raised.value.exception, ClientError)


def test_aws_call_raises_connection_errors_too():
    @aws_call("list groups")
    def unreachable():
        raise EndpointConnectionError(endpoint_url="https://greengrass.example")

    with pytest.raises(AWSCallError, match="Failed to list groups"):
        unreachable()


def test_aws_call_missing_gives_the_value_for_a_resource_that_does_not_exist():
    @aws_call("describe thing", missing=None)
    def describe(code):
        raise client_error(code, status=404)

    assert describe("ResourceNotFoundException") is None
    with pytest.raises(AWSCallError, match="Failed to describe thing"):
        describe("UnauthorizedException")


def test_aws_call_missing_codes_say_what_not_found_is_for_that_service():
    # Greengrass V1 answers an unknown ID with IdNotFoundException; its reads list them as missing_codes.
    @aws_call("get group", missing=None, missing_codes=("IdNotFoundException",))
    def get_group(code):
        raise client_error(code, status=404)

    assert get_group("IdNotFoundException") is None
    with pytest.raises(AWSCallError, match="Failed to get group"):
        get_group("ResourceNotFoundException")

    # The other calls keep the default code.
    @aws_call("describe thing", missing=None)
    def describe(code):
        raise client_error(code, status=404)

    with pytest.raises(AWSCallError, match="Failed to describe thing"):
        describe("IdNotFoundException")


class Module:
    def fail_json_aws(self, exception, msg):
        raise SystemExit(("aws", type(exception).__name__, msg))

    def fail_json(self, msg):
        raise SystemExit(("plain", None, msg))


def test_fail_aws_call_says_what_the_call_was_for_then_the_operation():
    error = AWSCallError(message="Failed to create group version", exception=client_error("BadRequestException"))
    with pytest.raises(SystemExit) as failed:
        fail_aws_call(Module(), error, "Greengrass V1 call failed for group 'edge'")
    assert failed.value.code == (
        "aws",
        "ClientError",
        "Greengrass V1 call failed for group 'edge': Failed to create group version",
    )
    with pytest.raises(SystemExit) as failed:
        fail_aws_call(Module(), AWSCallError(message="Failed to get policy"), None)
    assert failed.value.code == ("plain", None, "Failed to get policy")
