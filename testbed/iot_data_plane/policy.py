"""AWS IoT Core policy evaluation, as the test bed's broker and HTTPS data-plane endpoints apply it.

Test equipment: one evaluator for every data-plane check in the bed (MQTT connect, publish, subscribe,
receive, retain; the credential provider's ``iot:AssumeRoleWithCertificate``; Greengrass data-plane
actions). Each rule is AWS's, from the page named beside it (AWS IoT Core developer guide unless said
otherwise; sources in the public ``awsdocs/aws-iot-docs`` repository, ``doc_source/<page>.md``):

- The principal's permissions are the union of every policy attached to its certificate; an explicit
  ``Deny`` overrides any ``Allow``; with no matching ``Allow`` the request is denied
  (iot-policies.md, "AWS IoT Core policies"; IAM User Guide reference_policies_evaluation-logic.md).
- ``Action`` and ``Resource`` are a string or a list; ``*`` matches any run of characters and ``?`` one
  character, in actions and resource ARNs (IAM User Guide reference_policies_elements_resource.md,
  "Using wildcards in resource ARNs"). Actions compare case-insensitively, resources case-sensitively.
- MQTT wildcards ``+`` and ``#`` in a policy are literal characters: a ``topicfilter/a/#`` resource
  allows subscribing to the filter ``a/#`` only, and ``topic/a/#`` matches no topic
  (pub-sub-policy.md; Greengrass V2 guide device-auth.md: "treat MQTT wildcard characters (+ and #)
  as literal strings").
- Resources by action (iot-action-resources.md): ``iot:Connect`` on ``client/<clientId>``,
  ``iot:Publish``/``iot:Receive``/``iot:RetainPublish`` on ``topic/<topic>``, ``iot:Subscribe`` on
  ``topicfilter/<filter>``, ``iot:AssumeRoleWithCertificate`` on ``rolealias/<alias>``.
- Policy variables (basic-policy-variables.md, thing-policy-variables.md, cert-policy-variables.md):
  ``${iot:ClientId}``; ``${iot:Connection.Thing.ThingName}``, ``...ThingTypeName``,
  ``...Attributes[name]`` and ``...IsAttached`` resolve only when the client ID is the name of a thing
  attached to the certificate ("the value of clientId ... must exactly match the thing name");
  ``${iot:Certificate.Subject.CommonName}`` and the other subject fields. A variable that cannot be
  resolved leaves its resource or condition unmatched (IAM User Guide reference_policies_variables.md:
  "If the policy variable can't be resolved ... the statement doesn't match"), so it never allows.
- Conditions: ``Bool``, ``StringEquals``, ``StringNotEquals``, ``StringLike``, ``StringNotLike`` on the
  keys above (the documented use is ``"Bool": {"iot:Connection.Thing.IsAttached": ["true"]}``,
  thing-policy-variables.md). Values of a key are matched with "any of" semantics, keys with "all".

Refused with ``PolicyError`` (so a bed check never allows by accident): documents that are not
``{"Version": "2012-10-17" | "2008-10-17", "Statement": [...]}``, statements with an ``Effect`` other than
``Allow``/``Deny``, without ``Action`` or ``Resource``, with elements this evaluator does not implement
(``NotAction``, ``NotResource``, ``Principal``, ``NotPrincipal``, other condition operators, ``ForAnyValue:`` /
``ForAllValues:`` qualifiers, ``IfExists``) and variables it does not know (``aws:SourceIp`` among them).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field

VERSIONS = ("2012-10-17", "2008-10-17")
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource", "Condition"}
_NOT_EMULATED_KEYS = {"NotAction", "NotResource", "Principal", "NotPrincipal"}
_CONDITION_OPERATORS = ("Bool", "StringEquals", "StringNotEquals", "StringLike", "StringNotLike")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_THING_ATTRIBUTE = re.compile(r"^iot:Connection\.Thing\.Attributes\[([^\]]+)\]$")
_CERTIFICATE_FIELD = re.compile(r"^iot:Certificate\.(Subject|Issuer)\.([A-Za-z]+)$")
_PLAIN_KEYS = (
    "iot:ClientId",
    "iot:Connection.Thing.ThingName",
    "iot:Connection.Thing.ThingTypeName",
    "iot:Connection.Thing.IsAttached",
)


class PolicyError(ValueError):
    """A policy document the evaluator refuses (malformed, or using what it does not emulate)."""


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Policy:
    name: str
    statements: tuple[Statement, ...]


@dataclass
class RequestContext:
    """What AWS knows about the caller when it evaluates a request.

    thing: the thing whose name equals the client ID and that is attached to the certificate
    (None otherwise) as {"name", "type", "attributes"}; certificate: subject/issuer fields by name
    ({"Subject.CommonName": "..."}).
    """

    client_id: str | None = None
    thing: dict | None = None
    certificate: dict = field(default_factory=dict)

    def value(self, key: str) -> str | None:
        if key == "iot:ClientId":
            return self.client_id
        if key == "iot:Connection.Thing.IsAttached":
            return "true" if self.thing else "false"
        if key.startswith("iot:Connection.Thing."):
            if not self.thing:
                return None
            if key == "iot:Connection.Thing.ThingName":
                return self.thing["name"]
            if key == "iot:Connection.Thing.ThingTypeName":
                return self.thing.get("type")
            attribute = _THING_ATTRIBUTE.match(key)
            return (self.thing.get("attributes") or {}).get(attribute.group(1)) if attribute else None
        match = _CERTIFICATE_FIELD.match(key)
        if match:
            return self.certificate.get(match.group(1) + "." + match.group(2))
        return None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _known_key(key: str) -> bool:
    return key in _PLAIN_KEYS or bool(_THING_ATTRIBUTE.match(key)) or bool(_CERTIFICATE_FIELD.match(key))


def _strings(value, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise PolicyError("%s must be a non-empty string or a list of non-empty strings, got %r" % (where, value))
    return tuple(items)


def _check_variables(text: str, where: str) -> None:
    for name in _VARIABLE.findall(text):
        if not _known_key(name):
            raise PolicyError("%s uses the policy variable ${%s}, which the test bed does not know" % (where, name))


def _parse_conditions(value, where: str) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    if not isinstance(value, dict) or not value:
        raise PolicyError("%s.Condition must be a non-empty object" % where)
    parsed = []
    for operator, block in value.items():
        if operator not in _CONDITION_OPERATORS:
            raise PolicyError(
                "%s.Condition uses the operator %r, which the test bed does not emulate (it knows %s)"
                % (where, operator, ", ".join(_CONDITION_OPERATORS))
            )
        if not isinstance(block, dict) or not block:
            raise PolicyError("%s.Condition.%s must be a non-empty object of key: values" % (where, operator))
        for key, values in block.items():
            if not _known_key(key):
                raise PolicyError(
                    "%s.Condition.%s uses the key %r, which the test bed does not know" % (where, operator, key)
                )
            values = (values,) if isinstance(values, (str, bool)) else values
            if not isinstance(values, (list, tuple)) or not values:
                raise PolicyError("%s.Condition.%s.%s must be a value or a non-empty list" % (where, operator, key))
            parsed.append((operator, key, tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in values)))
    return tuple(parsed)


def parse_policy(name: str, document) -> Policy:
    """A policy from its JSON text or dict; PolicyError naming the policy and the element otherwise."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise PolicyError("policy %s: the document is not JSON (%s)" % (name, exc)) from exc
    if not isinstance(document, dict):
        raise PolicyError("policy %s: the document must be a JSON object" % name)
    unknown = set(document) - {"Version", "Statement", "Id"}
    if unknown:
        raise PolicyError("policy %s: unknown top-level elements %s" % (name, sorted(unknown)))
    if document.get("Version") not in VERSIONS:
        raise PolicyError("policy %s: Version must be one of %s, got %r" % (name, VERSIONS, document.get("Version")))
    raw_statements = document.get("Statement")
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise PolicyError("policy %s: Statement must be a statement or a non-empty list of statements" % name)
    statements = []
    for index, raw in enumerate(raw_statements):
        where = "policy %s: Statement[%d]" % (name, index)
        if not isinstance(raw, dict):
            raise PolicyError("%s must be an object" % where)
        not_emulated = set(raw) & _NOT_EMULATED_KEYS
        if not_emulated:
            raise PolicyError("%s uses %s, which the test bed does not emulate" % (where, sorted(not_emulated)))
        unknown = set(raw) - _STATEMENT_KEYS
        if unknown:
            raise PolicyError("%s has unknown elements %s" % (where, sorted(unknown)))
        if raw.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError("%s: Effect must be Allow or Deny, got %r" % (where, raw.get("Effect")))
        if "Action" not in raw or "Resource" not in raw:
            raise PolicyError("%s needs both Action and Resource" % where)
        actions = _strings(raw["Action"], where + ".Action")
        for action in actions:
            if action != "*" and not re.match(r"^[A-Za-z0-9-]+:[A-Za-z0-9*?]+$", action):
                raise PolicyError("%s.Action: %r is not service:action" % (where, action))
        resources = _strings(raw["Resource"], where + ".Resource")
        for resource in resources:
            _check_variables(resource, where + ".Resource")
        conditions = _parse_conditions(raw["Condition"], where) if "Condition" in raw else ()
        statements.append(Statement(raw["Effect"], actions, resources, conditions))
    return Policy(name, tuple(statements))


@functools.lru_cache(maxsize=4096)
def _wildcard_regex(pattern: str, case_sensitive: bool) -> re.Pattern:
    flags = re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE
    return re.compile("^" + _wildcards_to_regex(pattern) + "$", flags)


def wildcard_match(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """IAM-style matching: ``*`` any run of characters, ``?`` one; everything else (``+``, ``#``) literal."""
    return bool(_wildcard_regex(pattern, case_sensitive).match(value))


def _wildcards_to_regex(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def _resource_matches(pattern: str, resource: str, context: RequestContext) -> bool:
    """Match after substituting policy variables; a substituted value is literal (a client ID "*" is no
    wildcard), and an unresolved variable makes the resource match nothing."""
    body, position = [], 0
    for match in _VARIABLE.finditer(pattern):
        value = context.value(match.group(1))
        if value is None:
            return False
        body += [_wildcards_to_regex(pattern[position : match.start()]), re.escape(value)]
        position = match.end()
    body.append(_wildcards_to_regex(pattern[position:]))
    return bool(re.match("^" + "".join(body) + "$", resource, re.DOTALL))


def _condition_holds(operator: str, key: str, values: tuple[str, ...], context: RequestContext) -> bool:
    actual = context.value(key)
    if actual is None:
        return False
    if operator == "Bool":
        return actual.lower() in (v.lower() for v in values)
    if operator == "StringEquals":
        return actual in values
    if operator == "StringNotEquals":
        return actual not in values
    if operator == "StringLike":
        return any(wildcard_match(v, actual) for v in values)
    return not any(wildcard_match(v, actual) for v in values)  # StringNotLike


def _statement_applies(statement: Statement, action: str, resource: str, context: RequestContext) -> bool:
    if not any(wildcard_match(a, action, case_sensitive=False) for a in statement.actions):
        return False
    if not any(_resource_matches(r, resource, context) for r in statement.resources):
        return False
    return all(_condition_holds(op, key, values, context) for op, key, values in statement.conditions)


def evaluate(policies: list[Policy], action: str, resource: str, context: RequestContext) -> Decision:
    """Allow only when some attached policy allows and none denies (explicit Deny wins)."""
    allowed_by = None
    for policy in policies:
        for index, statement in enumerate(policy.statements):
            if not _statement_applies(statement, action, resource, context):
                continue
            if statement.effect == "Deny":
                return Decision(False, "explicitly denied by policy %s Statement[%d]" % (policy.name, index))
            allowed_by = allowed_by or "allowed by policy %s Statement[%d]" % (policy.name, index)
    if allowed_by:
        return Decision(True, allowed_by)
    names = ", ".join(p.name for p in policies) or "none attached"
    return Decision(False, "no policy allows %s on %s (policies: %s)" % (action, resource, names))
