"""The fault proxy's aimed rules hit exactly the requests they name, with the error of the service they belong to."""

from __future__ import annotations

import botocore.config
import pytest
from botocore.exceptions import ClientError

from testbed.fault_proxy import FaultPlan, FaultProxy, FaultRule

pytestmark = pytest.mark.aws

NO_RETRIES = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})


def test_a_rule_takes_its_first_matches_only():
    rule = FaultRule("lost", "POST", r"^/greengrass/v2/deployments$", times=2)
    plan = FaultPlan(rules=[rule])
    assert plan.draw("greengrassv2", "GET", "/greengrass/v2/deployments") is None  # other method
    assert plan.draw("greengrassv2", "POST", "/greengrass/v2/deployments/x/cancel") is None  # other path
    assert plan.draw("greengrassv2", "POST", "/greengrass/v2/deployments?x=1") == "lost"  # query ignored
    assert plan.draw("greengrassv2", "POST", "/greengrass/v2/deployments") == "lost"
    assert plan.draw("greengrassv2", "POST", "/greengrass/v2/deployments") is None  # used up
    with pytest.raises(ValueError, match="fault must be"):
        FaultRule("drop", "POST", "/")


def test_a_rule_can_let_its_first_matches_through_and_counts_them():
    """``after`` picks the Nth write of a run (the kill point of bench/killed_site.py); methods are a regex."""
    rule = FaultRule("hold", "POST|PUT|DELETE|PATCH", ".", after=2)
    plan = FaultPlan(rules=[rule])
    assert plan.draw("iot", "GET", "/things") is None and rule.matched == 0  # a read is not counted
    assert plan.draw("iot", "POST", "/things/a") is None  # the first two writes pass
    assert plan.draw("s3", "PUT", "/bucket/key") is None
    assert plan.draw("iot", "POSTX", "/things/a") is None  # the method matched in full only
    assert plan.draw("greengrass", "DELETE", "/greengrass/groups/g") == "hold"  # the third write
    assert plan.draw("iot", "PATCH", "/x") is None and rule.matched == 4  # used up, still counted


def test_greengrass_v1_and_v2_get_their_own_throttling_error(clean_aws, boto_session):
    """Both sign as "greengrass"; V2 throttles with 429 ThrottlingException, V1 with the common 400 one."""
    rules = [
        FaultRule("throttle", "GET", r"^/greengrass/v2/components$"),
        FaultRule("throttle", "GET", r"^/greengrass/groups$"),
    ]
    with FaultProxy(clean_aws.url, FaultPlan(rules=rules)) as proxy:
        v2 = boto_session.client("greengrassv2", endpoint_url=proxy.url, config=NO_RETRIES)
        v1 = boto_session.client("greengrass", endpoint_url=proxy.url, config=NO_RETRIES)
        with pytest.raises(ClientError) as v2_error:
            v2.list_components()
        with pytest.raises(ClientError) as v1_error:
            v1.list_groups()
        assert v2.list_components()["components"] == [] and v1.list_groups()["Groups"] == []  # rules used up
    assert status_and_code(v2_error) == (429, "ThrottlingException")
    assert status_and_code(v1_error) == (400, "ThrottlingException")


def status_and_code(excinfo) -> tuple[int, str]:
    response = excinfo.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_reject_is_the_services_bad_request_and_is_not_retried(clean_aws, boto_session):
    rules = [FaultRule("reject", "GET", r"^/greengrass/v2/components$")]
    plan = FaultPlan(rules=rules)
    with FaultProxy(clean_aws.url, plan) as proxy:
        v2 = boto_session.client("greengrassv2", endpoint_url=proxy.url)  # botocore's default retries
        with pytest.raises(ClientError) as rejected:
            v2.list_components()
    assert status_and_code(rejected) == (400, "ValidationException")
    assert rejected.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert [entry.fault for entry in plan.log] == ["reject"]


def test_answers_pass_through_unchanged_head_included(clean_aws, boto_session):
    """What the proxy does not fault reaches the client as the endpoint sent it: S3 HeadObject's Content-Length is
    the object's size (a proxy answering 0 would change every artifact fingerprint the collection computes)."""
    direct = boto_session.client("s3", endpoint_url=clean_aws.url)
    direct.create_bucket(Bucket="proxy-passthrough")
    direct.put_object(Bucket="proxy-passthrough", Key="blob", Body=b"x" * 1234)
    with FaultProxy(clean_aws.url, FaultPlan()) as proxy:
        proxied = boto_session.client("s3", endpoint_url=proxy.url)
        head = proxied.head_object(Bucket="proxy-passthrough", Key="blob")
        body = proxied.get_object(Bucket="proxy-passthrough", Key="blob")["Body"].read()
    assert head["ContentLength"] == 1234 and body == b"x" * 1234
    assert head["ETag"] == direct.head_object(Bucket="proxy-passthrough", Key="blob")["ETag"]
