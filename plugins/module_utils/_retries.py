# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One wrapper for every AWS call this collection's module_utils make: its retries and its errors.

``aws_call(operation)`` retries what the services say is retryable (below), then raises any botocore error that
remains as ``AWSCallError("Failed to <operation>: <AWS's message>")``; every module reports it with
``fail_aws_call``, which adds what the call was for and AWS's error code and request ID (``fail_json_aws``).

amazon.aws's ``AWSRetry`` retries EC2's throttling and transient codes only (``RequestLimitExceeded``,
``Throttling``, ``TooManyRequestsException``, ``InternalError``, ...). The services this collection calls
answer with other codes, which would otherwise fail a task after botocore's own few attempts:

- AWS IoT: ``ThrottlingException`` (429), ``ServiceUnavailableException`` (503), ``InternalFailureException``
  and ``InternalException`` (500) - the IoT API reference's common errors;
- AWS IoT Greengrass V2: ``ThrottlingException`` (429), ``InternalServerException`` (500);
- AWS IoT Greengrass V1: ``InternalServerErrorException`` (500);
- Lambda: ``TooManyRequestsException`` (429), ``ServiceException`` (500);
- S3: ``SlowDown`` (503), ``RequestTimeout`` (400), ``InternalError`` (500) - S3's error responses page.

Each code is one the service's botocore model (or S3's error list) names for a throttled or failed-in-the-
service request, never one for a bad request or a quota (``LimitExceededException`` is IoT's quota error:
retrying cannot help).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import uuid

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.errors import AWSErrorHandler
from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

RETRYABLE_ERROR_CODES = (
    "ThrottlingException",
    "ServiceUnavailableException",
    "InternalFailureException",
    "InternalException",
    "InternalServerException",
    "InternalServerErrorException",
    "ServiceException",
    "SlowDown",
    "RequestTimeout",
)


def aws_retry(**kwargs):
    """``AWSRetry.jittered_backoff`` with the codes above; keyword arguments as jittered_backoff's."""
    extra = list(RETRYABLE_ERROR_CODES) + list(kwargs.pop("catch_extra_error_codes", None) or [])
    return AWSRetry.jittered_backoff(catch_extra_error_codes=extra, **kwargs)


class AWSCallError(AnsibleAWSError):
    """An AWS call that failed after its retries; the message names the operation."""


class AWSCallErrorHandler(AWSErrorHandler):
    _CUSTOM_EXCEPTION = AWSCallError
    # AWS IoT's and Greengrass V2's code for a resource that does not exist (their API references' errors).
    MISSING_CODES = ("ResourceNotFoundException",)

    @classmethod
    def _is_missing(cls):
        return is_boto3_error_code(list(cls.MISSING_CODES))


_RAISE = object()


def aws_call(operation, missing=_RAISE, missing_codes=None, **retry_kwargs):
    """Decorate one service call: retried as ``aws_retry``, its botocore errors raised as ``AWSCallError``.

    ``missing``: the value to return when the resource does not exist, as amazon.aws's ``list_error_handler``
    (``None`` or ``[]`` for a read) and ``deletion_error_handler`` (``False`` for a delete of something already gone)
    do; left out, that error is raised like any other. ``missing_codes``: the error codes that mean it does not exist,
    for a service that says so otherwise than ``ResourceNotFoundException`` (Greengrass V1).
    """
    handler_class = AWSCallErrorHandler
    if missing_codes is not None:
        handler_class = type("AWSCallErrorHandler", (AWSCallErrorHandler,), {"MISSING_CODES": tuple(missing_codes)})
    if missing is _RAISE:
        handler = handler_class.common_error_handler(operation)
    else:
        handler = handler_class.list_error_handler(operation, missing)
    retry = aws_retry(**retry_kwargs)

    def wrapper(func):
        return handler(retry(func))

    return wrapper


def fail_aws_call(module, error, context):
    """Fail the module for an ``AWSCallError``: "<context>: Failed to <operation>: <AWS's message>", with AWS's
    error code and request ID in the result as ``fail_json_aws`` gives them."""
    message = "%s: %s" % (context, error.message) if context else error.message
    if error.exception is None:
        module.fail_json(msg=message)
    module.fail_json_aws(error.exception, msg=message)


def client_token():
    """A fresh client token for one create, to be passed unchanged to every retry of it.

    botocore keeps an idempotency token across its own retries, but each retry of ``aws_retry()`` above is a new
    API call with a new token, so a create whose response was lost would be made twice. One token per create and
    per run (not derived from the request): a token derived from the content would, within the service's cache
    window, answer a later identical create with the old result, even after that resource was deleted.
    """
    return str(uuid.uuid4())
