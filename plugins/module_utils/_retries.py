# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One retry policy for every AWS call this collection's module_utils make.

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


def client_token():
    """A fresh client token for one create, to be passed unchanged to every retry of it.

    botocore keeps an idempotency token across its own retries, but each retry of ``aws_retry()`` above is a new
    API call with a new token, so a create whose response was lost would be made twice. One token per create and
    per run (not derived from the request): a token derived from the content would, within the service's cache
    window, answer a later identical create with the old result, even after that resource was deleted.
    """
    return str(uuid.uuid4())
