"""The collection's retry policy: the throttling and transient codes IoT, Greengrass, Lambda and S3 answer with.

Real botocore ClientErrors, as botocore raises them for each service's error response; the decorated function
stands for the AWS call (no AWS is needed to test which answers are retried).
"""

from __future__ import annotations

import pytest
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import RETRYABLE_ERROR_CODES, aws_retry
from botocore.exceptions import ClientError


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
