"""The AWS IoT Core credential provider for the test bed: a device's certificate exchanged for AWS credentials.

Test equipment, in the local AWS endpoint's process (it reads the same IoT, IAM and STS state). What a
Greengrass V2 nucleus's token exchange service calls, from "Authorizing direct calls to AWS services
using AWS IoT Core credential provider" (AWS IoT Core developer guide, authorizing-direct-aws.md):

- ``GET /role-aliases/<alias>/credentials`` over HTTPS with mutual TLS; the server name must be a
  ``<prefix>.credentials.iot.<region>.amazonaws.com`` host (DescribeEndpoint ``iot:CredentialProvider``).
- The certificate must be registered in that region and ACTIVE (``registry.py``).
- ``x-amzn-iot-thingname``, when sent, "must match the name of the AWS IoT Thing resource assigned to a
  cert. If it doesn't match, a 403 error is returned."
- The policies attached to the certificate must allow ``iot:AssumeRoleWithCertificate`` on
  ``rolealias/<alias>`` (step 4 of the page); otherwise 403.
- The role alias must exist (404 otherwise) and its role must trust ``credentials.iot.amazonaws.com``
  (the trust policy of step 1; STS refuses to assume it otherwise: 403 here).
- The answer is ``{"credentials": {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}}``
  from STS AssumeRole on the alias's role, valid for the alias's ``credentialDurationSeconds``; the local
  endpoint accepts those credentials.

Requests signed with the credentials it issued are authorized with IAM by the endpoint (the role's policies;
``moto_server_with_fixes.py``, fix 3). NOT emulated: the exact error bodies AWS sends (here ``{"message": ...}``
with the status above); ``credentials-iot:*`` IAM policy variables in the session;
throttling and the credential provider's per-device rate limits.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

from testbed.iot_data_plane.registry import LOG, IotRegistry

# Access key IDs this credential provider issued: the endpoint authorizes their requests with IAM
# (moto_server_with_fixes.py, fix 3), as AWS authorizes a device's token-exchange credentials.
ISSUED_ACCESS_KEYS: set[str] = set()

CREDENTIALS_HOST = re.compile(r"^[a-z0-9]+\.credentials\.iot\.([a-z0-9-]+)\.amazonaws\.com$")
PATH = re.compile(r"^/role-aliases/([^/?]+)/credentials$")
TRUSTED_SERVICE = "credentials.iot.amazonaws.com"


class CredentialRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _trusts_credential_provider(trust_policy) -> bool:
    document = json.loads(trust_policy) if isinstance(trust_policy, str) else trust_policy
    statements = document.get("Statement") or []
    for statement in [statements] if isinstance(statements, dict) else statements:
        services = ((statement.get("Principal") or {}).get("Service")) or []
        services = [services] if isinstance(services, str) else services
        actions = statement.get("Action") or []
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") == "Allow" and TRUSTED_SERVICE in services and "sts:AssumeRole" in actions:
            return True
    return False


class CredentialProvider:
    """The rules (``exchange``); ``https.py`` serves them over mutual TLS."""

    def __init__(self, registry: IotRegistry):
        self.registry = registry

    def exchange(self, principal, alias: str, thing_name: str | None) -> dict:
        if principal is None:
            raise CredentialRefused(403, "Access Denied: the certificate is not registered and ACTIVE")
        backend = self.registry.backend(principal.region)
        if thing_name and self.registry.attached_thing(principal, thing_name) is None:
            raise CredentialRefused(403, "Access Denied: thing %s is not attached to the certificate" % thing_name)
        decision = self.registry.authorize(principal, thing_name, "iot:AssumeRoleWithCertificate", "rolealias/" + alias)
        if not decision.allowed:
            raise CredentialRefused(403, "Access Denied: %s" % decision.reason)
        role_alias = backend.role_aliases.get(alias)
        if role_alias is None:
            raise CredentialRefused(404, "Role alias %s does not exist" % alias)
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends

        role_name = role_alias.role_arn.rsplit("/", 1)[-1]
        iam = iam_backends[principal.account_id]["global"]
        role = next((r for r in list(iam.roles.values()) if r.name == role_name), None)
        if role is None or not _trusts_credential_provider(role.assume_role_policy_document):
            raise CredentialRefused(
                403, "Access Denied: role %s does not exist or does not trust %s" % (role_name, TRUSTED_SERVICE)
            )
        assumed = sts_backends[principal.account_id]["aws"].assume_role(
            region_name=principal.region,
            role_session_name=principal.certificate_id[:64],
            role_arn=role_alias.role_arn,
            policy="",
            duration=role_alias.credential_duration_seconds,
            external_id="",
        )
        ISSUED_ACCESS_KEYS.add(assumed.access_key_id)
        return {
            "credentials": {
                "accessKeyId": assumed.access_key_id,
                "secretAccessKey": assumed.secret_access_key,
                "sessionToken": assumed.session_token,
                "expiration": assumed.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        }

    def handle(self, principal, match, headers, body) -> tuple[int, dict]:
        """GET /role-aliases/<alias>/credentials on the credentials host (``https.py`` routes it here)."""
        try:
            return 200, self.exchange(principal, unquote(match.group(1)), headers.get("x-amzn-iot-thingname"))
        except CredentialRefused as refused:
            LOG.info("credential provider: %s %s", refused.status, refused)
            return refused.status, {"message": str(refused)}
