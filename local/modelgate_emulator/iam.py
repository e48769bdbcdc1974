"""IAM enforced on every call of the embedded AWS: who is calling, and may they.

What is modelled (AWS documentation: "Policy evaluation logic", IAM User Guide,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html,
and "Cross-account / same-account evaluation": within one account a request is allowed
when an identity-based *or* a resource-based policy allows it and nothing denies it):

- **Principal.** A context variable names the caller of the current thread:
  a Lambda handler runs as its execution role (an assumed-role session named after the
  function: "Lambda execution role", Lambda Developer Guide); a Step Functions execution
  runs as the state machine's role (an execution started from inside a handler does not
  inherit the handler's role); the deployer, the emulator's own machinery (alarm
  evaluator, metrics) and test code run as ``local-admin``, which is never checked.
  Threads a handler starts inherit its principal (see ``environ.inherit_in_threads``).
  ``LocalAWS.client(service, principal=...)`` binds a named principal to one client and
  ``LocalAWS.acting_as`` runs a block as one; ``sts:GetCallerIdentity`` names the acting
  principal (the ledger records which approver or operator acted).
- **Enforcement.** Every botocore client created while an :class:`Enforcer` is installed
  gets two handlers: ``before-parameter-build`` keeps the call's API parameters, and
  ``before-call`` (registered first, so it runs before moto's own ``before-send``
  stubber is reached) derives the authorisation requests of the call
  (``iam_policy.requests_for_call``), evaluates each against the principal's identity
  policies (inline role policies and attached managed policies, AWS-managed ones read
  from moto's bundled ``aws_managed_policies`` data) and the resource policy that applies
  (S3 bucket policy, SNS topic policy, Secrets Manager resource policy, Lambda function
  policy from AddPermission), and on a deny returns AWS's AccessDenied response for the
  service (``iam_policy.access_denied_error``), which botocore parses and raises as it
  would from AWS.
- **Service principals.** EventBridge delivering to a Lambda target is allowed by the
  function's resource policy (``AWS::Lambda::Permission`` for ``events.amazonaws.com``
  with ``aws:SourceArn`` = the rule ARN: "Using resource-based policies for Amazon
  EventBridge", EventBridge User Guide); a Step Functions target is started with the
  target's ``RoleArn``.
- **Global condition keys** every local request carries: ``aws:SecureTransport`` (boto3
  uses https), ``aws:PrincipalArn``, ``aws:PrincipalAccount``, ``aws:RequestedRegion``,
  and ``aws:SourceArn`` / ``aws:SourceAccount`` for service principals ("AWS global
  condition context keys", IAM User Guide).
- **Module caches.** The layer's module-level caches of AWS responses (a secret, an S3
  object) are kept per execution environment while enforcing (``iam_caches``), so a warm
  cache filled by one function never hides another function's call from IAM.
- **Record.** Every decision (principal, role, action, resource, allowed, matched
  statements) is kept on the enforcer for the least-privilege report
  (``modelgate_emulator.iam_report``).

Calls made to the ``modelgate local up`` HTTP endpoint from another process reach moto's
server without a botocore client: ``http_iam`` authorises those with :meth:`Enforcer.authorize`
(the caller named by its SigV4 access key). Distributed Map child executions, which moto runs
in process, are authorised as ``states:StartExecution`` by ``stepfunctions``.

Not modelled: permissions boundaries, SCPs, session policies, KMS key policies (AWS-managed
keys allow their service's callers).

Cost: identity policies are cached per role and dropped on any IAM write; resource
policies are parsed once per distinct document.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any
from unittest import mock

from modelgate_emulator import environ

LOG = logging.getLogger(__name__)

LOCAL_ADMIN_LABEL = "local-admin"
_PARAMS_KEY = "modelgate_iam_params"
_IAM_READ_PREFIXES = ("Get", "List", "Simulate", "Generate")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who makes a call: an assumed-role session, a service principal, or local-admin."""

    arn: str
    label: str  # how the report names it: the role name, a service, or local-admin
    role_arn: str | None = None  # the IAM role whose identity policies apply
    service: str | None = None  # a service principal ("events.amazonaws.com")
    source_arn: str | None = None  # aws:SourceArn of a service principal's request
    admin: bool = False


LOCAL_ADMIN = Principal(arn=LOCAL_ADMIN_LABEL, label=LOCAL_ADMIN_LABEL, admin=True)

_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("modelgate_iam_principal", default=None)
environ.inherit_in_threads(_PRINCIPAL)


def current() -> Principal:
    """The current thread's principal (local-admin when none was set)."""
    return _PRINCIPAL.get() or LOCAL_ADMIN


def requester_account(default_account: str) -> str:
    """What S3 names as an event's ``requester``: the current principal's account ID, or the
    service principal itself ("EventBridge event message structure", Amazon S3 User Guide);
    ``default_account`` for the local administrator."""
    principal = current()
    parts = principal.arn.split(":")
    if len(parts) >= 5 and parts[0] == "arn":
        return parts[4] or default_account
    return principal.arn if principal.arn.endswith(".amazonaws.com") else default_account


@contextlib.contextmanager
def acting_as(principal: Principal | None) -> Iterator[Principal | None]:
    """Run the block as ``principal`` (None: leave the current principal as it is)."""
    if principal is None:
        yield None
        return
    token = _PRINCIPAL.set(principal)
    try:
        yield principal
    finally:
        _PRINCIPAL.reset(token)


def role_principal(role_arn: str, session_name: str) -> Principal:
    """The assumed-role session a role's user (a function, a state machine) calls as."""
    from modelgate_emulator import iam_policy

    session = _session_name(session_name)
    return Principal(
        arn=iam_policy.principal_for_role(role_arn, session),
        label=role_arn.rsplit("/", 1)[-1],
        role_arn=role_arn,
    )


def service_principal(service: str, *, source_arn: str | None = None) -> Principal:
    """A service principal (``events.amazonaws.com``) acting for ``source_arn``."""
    return Principal(arn=service, label=service, service=service, source_arn=source_arn)


def _session_name(name: str) -> str:
    # RoleSessionName: 2-64 characters of [\w+=,.@-] (STS AssumeRole API reference).
    cleaned = "".join(c if c.isalnum() or c in "+=,.@-_" else "-" for c in name)[:64]
    return cleaned if len(cleaned) >= 2 else f"{cleaned}--"[:2]


def function_principal(role_arn: str | None, function_name: str) -> Principal | None:
    """A Lambda function's execution-role session, if enforcement is on."""
    if active() is None or not role_arn:
        return None
    return role_principal(role_arn, function_name)


# ---------------------------------------------------------------------------- records
@dataclasses.dataclass(frozen=True)
class DecisionRecord:
    """One authorisation: who asked for what, and which statements decided it."""

    principal: str
    role_arn: str | None
    action: str
    resource: str
    allowed: bool
    reason: str
    matched: tuple[str, ...]
    operation: str


class AccessDenied(Exception):
    """A call made outside botocore (an EventBridge delivery) that IAM refused."""

    def __init__(self, principal: str, action: str, resource: str, reason: str) -> None:
        super().__init__(
            f"AccessDeniedException: {principal} is not authorized to perform: {action} on resource: {resource} ({reason})"
        )
        self.principal = principal
        self.action = action
        self.resource = resource


# ---------------------------------------------------------------------------- enforcer
# Installed enforcers, newest last: a LocalAWS started inside another (a test's own stack
# beside a session fixture's) enforces and records until it stops.
_ACTIVE: list[Enforcer] = []
_ACTIVE_LOCK = threading.Lock()


def active() -> Enforcer | None:
    return _ACTIVE[-1] if _ACTIVE else None


class Enforcer:
    """Authorises every botocore call made in this process while installed."""

    def __init__(self, *, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region
        self.partition = "aws"
        self._records: list[DecisionRecord] = []
        self._records_lock = threading.Lock()
        self._identity_cache: dict[str, dict[str, Any]] = {}
        self._cache_lock = threading.Lock()
        self._parsed: dict[str, Any] = {}
        self._stack: contextlib.ExitStack | None = None

    # ---------------------------------------------------------------- lifecycle
    def install(self) -> None:
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                raise RuntimeError("this enforcer is installed already")
            _ACTIVE.append(self)
        stack = contextlib.ExitStack()
        try:
            environ.install()
            stack.callback(environ.uninstall)
            for target, attribute, value in self._patches():
                stack.enter_context(mock.patch.object(target, attribute, value))
        except BaseException:
            stack.close()
            with _ACTIVE_LOCK:
                _ACTIVE.remove(self)
            raise
        self._stack = stack

    def uninstall(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)

    def __enter__(self) -> Enforcer:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _patches(self) -> list[tuple[Any, str, Any]]:
        from botocore.session import Session
        from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

        original_create_client = Session.create_client

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original_create_client(session, *args, **kwargs)
            attach(client)
            return client

        original_execution_logic = ExecutionWorker._execution_logic

        def execution_logic(worker: Any) -> Any:
            # An execution runs as its state machine's role, whoever started it.
            details = worker._evaluation_details
            role_arn = details.aws_execution_details.role_arn
            name = details.state_machine_details.name
            with acting_as(role_principal(role_arn, name) if role_arn else LOCAL_ADMIN):
                return original_execution_logic(worker)

        return [
            (Session, "create_client", create_client),
            (ExecutionWorker, "_execution_logic", execution_logic),
            *_environment_scoped_caches(),
        ]

    # ---------------------------------------------------------------- records
    @property
    def records(self) -> list[DecisionRecord]:
        with self._records_lock:
            return list(self._records)

    def denied(self) -> list[DecisionRecord]:
        return [r for r in self.records if not r.allowed]

    def _record(self, record: DecisionRecord) -> None:
        with self._records_lock:
            self._records.append(record)

    # ---------------------------------------------------------------- policies
    def invalidate(self) -> None:
        with self._cache_lock:
            self._identity_cache.clear()

    def identity_policies(self, role_arn: str) -> dict[str, Any]:
        """{policy name: document} of a role: inline policies and attached managed policies."""
        with self._cache_lock:
            cached = self._identity_cache.get(role_arn)
        if cached is not None:
            return cached
        policies = _role_policies(role_arn, self.account_id)
        with self._cache_lock:
            self._identity_cache[role_arn] = policies
        return policies

    def lookup(self, kind: str, name: str) -> str | None:
        """ARNs a name alone does not give (a secret's random suffix), and a table's partition key
        attribute (for ``dynamodb:LeadingKeys``), from moto's state."""
        if kind == "dynamodb:partition-key":  # dynamodb:LeadingKeys needs the key schema
            from modelgate_emulator import dynamodb

            return dynamodb.partition_key_name(self.account_id, self.region, name)
        if kind == "secretsmanager:secret":
            from moto.secretsmanager.models import secretsmanager_backends

            backend = secretsmanager_backends[self.account_id][self.region]
            for secret in list(backend.secrets.values()):
                if name in (getattr(secret, "name", None), getattr(secret, "arn", None)):
                    return str(secret.arn)
        return None

    def _doc(self, raw: str | bytes | None) -> Any:
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        doc = self._parsed.get(text)
        if doc is None:
            doc = json.loads(text)
            self._parsed[text] = doc
        return doc

    def resource_policy(self, action: str, resource: str) -> tuple[str | None, Any]:
        """(name, document) of the resource-based policy that applies to ``resource``."""
        parts = resource.split(":", 5)
        if len(parts) < 6:
            return None, None
        service, region, account = parts[2], parts[3], parts[4] or self.account_id
        try:
            if service == "s3":
                from moto.s3.models import s3_backends

                bucket_name = parts[5].split("/", 1)[0]
                bucket = s3_backends[self.account_id][self.partition].buckets.get(bucket_name)
                return ("bucket-policy:" + bucket_name, self._doc(bucket.policy)) if bucket is not None else (None, None)
            if service == "sns":
                from moto.sns.models import sns_backends

                topic = sns_backends[account][region].topics.get(resource)
                return ("topic-policy", topic._policy_json) if topic is not None else (None, None)
            if service == "secretsmanager":
                from moto.secretsmanager.models import secretsmanager_backends

                backend = secretsmanager_backends[account][region]
                for secret in list(backend.secrets.values()):
                    if getattr(secret, "arn", None) == resource:
                        return ("secret-policy", self._doc(getattr(secret, "policy", None)))
                return None, None
            if service == "lambda" and parts[5].startswith("function:"):
                from moto.awslambda.utils import get_backend  # the simple backend without Docker

                name = parts[5].split(":")[1]
                backend = get_backend(account, region)
                try:
                    function = backend.get_function(name)
                    policy = function.policy.get_policy()["Policy"] if function.policy is not None else None
                except Exception:  # noqa: BLE001 - no statement yet (moto raises) or no function
                    return None, None
                return ("function-policy", policy) if policy else (None, None)
        except KeyError:
            return None, None
        return None, None

    # ---------------------------------------------------------------- decisions
    def authorize(self, principal: Principal, service: str, operation: str, params: Mapping[str, Any], region: str) -> Any:
        """Evaluate one call; returns the first denied (request, decision) or None."""
        from modelgate_emulator import iam_policy

        if principal.admin:
            return None
        requests = iam_policy.requests_for_call(
            service, operation, dict(params), region=region, account_id=self.account_id, lookup=self.lookup
        )
        for request in requests:
            decision = self.decide(principal, request, operation=f"{service}:{operation}")
            if not decision.allowed:
                return request, decision
        return None

    def decide(self, principal: Principal, request: Any, *, operation: str = "") -> Any:
        """Evaluate and record one authorisation request for ``principal``."""
        from modelgate_emulator import iam_policy

        context = {
            "aws:SecureTransport": "true",
            "aws:PrincipalArn": principal.role_arn or principal.arn,
            "aws:PrincipalAccount": self.account_id,
            "aws:RequestedRegion": self.region,
        }
        if principal.service:
            context["aws:PrincipalServiceName"] = principal.service
        if principal.source_arn:
            context["aws:SourceArn"] = principal.source_arn
            context["aws:SourceAccount"] = self.account_id
        context.update(dict(getattr(request, "context", None) or {}))
        request = _with_context(request, context)
        identity = self.identity_policies(principal.role_arn) if principal.role_arn else {}
        resource_name, resource_doc = self.resource_policy(request.action, request.resource)
        kwargs: dict[str, Any] = {"principal_arn": principal.service or principal.arn, "identity_policies": identity}
        if resource_doc is not None:
            kwargs["resource_policy"] = resource_doc
            kwargs["resource_policy_name"] = resource_name
        decision = iam_policy.evaluate(request, **kwargs)
        self._record(
            DecisionRecord(
                principal=principal.arn,
                role_arn=principal.role_arn,
                action=request.action,
                resource=request.resource,
                allowed=bool(decision.allowed),
                reason=str(getattr(decision, "reason", "")),
                matched=tuple(str(m) for m in (getattr(decision, "matched", None) or ())),
                operation=operation,
            )
        )
        if not decision.allowed:
            LOG.warning("IAM denied %s: %s on %s (%s)", principal.arn, request.action, request.resource, decision.reason)
        return decision

    def check(self, principal: Principal, action: str, resource: str, *, context: Mapping[str, Any] | None = None) -> None:
        """Authorise a call that doesn't go through botocore; raises :class:`AccessDenied`."""
        from modelgate_emulator import iam_policy

        request = iam_policy.AuthzRequest(action=action, resource=resource, context=dict(context or {}))
        decision = self.decide(principal, request, operation=action)
        if not decision.allowed:
            raise AccessDenied(principal.arn, action, resource, str(decision.reason))


def _environment_scoped_caches() -> list[tuple[Any, str, Any]]:
    """The layer's module caches, one per execution environment while enforcing (``iam_caches``):
    each function's first read is then made, and authorised, under its own role."""
    from modelgate_emulator import iam_caches

    return iam_caches.patches()


def _with_context(request: Any, context: dict[str, Any]) -> Any:
    if dataclasses.is_dataclass(request):
        return dataclasses.replace(request, context=context)
    if hasattr(request, "_replace"):
        return request._replace(context=context)
    request.context = context
    return request


def _role_policies(role_arn: str, account_id: str) -> dict[str, Any]:
    from moto.iam.models import iam_backends

    backend = iam_backends[account_id]["aws"]
    try:
        role = backend.get_role_by_arn(role_arn)
    except Exception:  # noqa: BLE001 - moto raises its own NotFound
        LOG.warning("IAM: role %s does not exist; it has no permissions", role_arn)
        return {}
    policies: dict[str, Any] = {}
    for name, document in role.policies.items():
        policies[name] = json.loads(document) if isinstance(document, str) else document
    for arn, policy in role.managed_policies.items():
        policies[arn] = managed_policy_document(policy)
    for arn in _AWS_MANAGED_ATTACHMENTS.get(role_arn, ()):
        policies[arn] = aws_managed_policy_document(arn)
    return policies


def managed_policy_document(policy: Any) -> dict[str, Any]:
    """The default version's document of a moto ManagedPolicy."""
    version = next((v for v in policy.versions if v.is_default), policy.versions[-1])
    document = version.document
    return json.loads(document) if isinstance(document, str) else dict(document)


# AWS-managed policies attached by the deployer that moto did not load (MOTO_CONFIG
# "load_aws_managed_policies": False): role ARN -> policy ARNs.
_AWS_MANAGED_ATTACHMENTS: dict[str, list[str]] = {}


def aws_managed_policy_document(policy_arn: str) -> dict[str, Any]:
    """An AWS-managed policy's default version, from moto's bundled copy of AWS's list."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    name = policy_arn.rsplit("/", 1)[-1]
    data = _aws_managed_data(aws_managed_policies_data).get(name)
    if data is None:
        raise KeyError(f"AWS-managed policy {policy_arn} is not in moto's bundled list")
    document: dict[str, Any] = data["Document"]
    return document


_AWS_MANAGED_PARSED: dict[int, dict[str, Any]] = {}


def _aws_managed_data(raw: str) -> dict[str, Any]:
    key = id(raw)
    if key not in _AWS_MANAGED_PARSED:
        _AWS_MANAGED_PARSED[key] = json.loads(raw)
    return _AWS_MANAGED_PARSED[key]


def attach_aws_managed(role_arn: str, policy_arn: str) -> None:
    """Record an AWS-managed policy attachment moto could not make (see above)."""
    aws_managed_policy_document(policy_arn)  # refuse a name AWS doesn't have
    _AWS_MANAGED_ATTACHMENTS.setdefault(role_arn, [])
    if policy_arn not in _AWS_MANAGED_ATTACHMENTS[role_arn]:
        _AWS_MANAGED_ATTACHMENTS[role_arn].append(policy_arn)
    enforcer = active()
    if enforcer is not None:
        enforcer.invalidate()


def forget_aws_managed() -> None:
    _AWS_MANAGED_ATTACHMENTS.clear()


# ---------------------------------------------------------------------------- botocore hook
_BOUND: weakref.WeakKeyDictionary[Any, Principal] = weakref.WeakKeyDictionary()


def bind_client(client: Any, principal: Principal) -> Any:
    """Every call of ``client`` runs as ``principal`` (whatever thread makes it)."""
    _BOUND[client] = principal
    return client


def attach(client: Any) -> None:
    """Register the enforcement handlers on one botocore client."""
    ref = weakref.ref(client)

    def keep_params(params: Any = None, context: Any = None, **_: Any) -> None:
        if context is not None and params is not None:
            context[_PARAMS_KEY] = params

    def before_call(model: Any = None, context: Any = None, **_: Any) -> Any:
        enforcer = active()
        if enforcer is None or model is None:
            return None
        owner = ref()
        principal = _BOUND.get(owner) if owner is not None else None
        principal = principal or current()
        service = model.service_model.service_name
        operation = model.name
        if service == "iam" and not operation.startswith(_IAM_READ_PREFIXES):
            enforcer.invalidate()
        if principal.admin:
            return None
        if service == "sts" and operation == "GetCallerIdentity":
            return _caller_identity(principal, enforcer.account_id)
        params = (context or {}).get(_PARAMS_KEY) or {}
        region = (context or {}).get("client_region") or enforcer.region
        denied = enforcer.authorize(principal, service, operation, params, region)
        if denied is None:
            return None
        request, decision = denied
        return _denied_response(model, service, request, principal, decision)

    client.meta.events.register("before-parameter-build", keep_params)
    client.meta.events.register_first("before-call", before_call)


def _caller_identity(principal: Principal, account_id: str) -> Any:
    """GetCallerIdentity answers with the acting principal (moto names its default user), so
    the ledger records the approver or operator who acted; it needs no permission ("GetCallerIdentity",
    AWS STS API Reference)."""
    from botocore.awsrequest import AWSResponse

    role_id = f"AROA{abs(hash(principal.role_arn or principal.arn)) % 10**16:016d}"
    session = principal.arn.rsplit("/", 1)[-1]
    parsed = {
        "UserId": f"{role_id}:{session}",
        "Account": account_id,
        "Arn": principal.arn,
        "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0},
    }
    return AWSResponse(url="https://local.modelgate/", status_code=200, headers={}, raw=_Raw(b"")), parsed


def _denied_response(model: Any, service: str, request: Any, principal: Principal, decision: Any) -> Any:
    """AWS's AccessDenied response, parsed by the client's own protocol parser."""
    from botocore.awsrequest import AWSResponse
    from botocore.parsers import create_parser

    from modelgate_emulator import iam_policy

    status, headers, body = iam_policy.access_denied_error(service, request, principal.arn, decision)
    raw = body.encode() if isinstance(body, str) else body
    http = AWSResponse(url="https://local.modelgate/", status_code=int(status), headers=dict(headers), raw=_Raw(raw))
    protocol = model.service_model.resolved_protocol if hasattr(model.service_model, "resolved_protocol") else model.metadata["protocol"]
    parser = create_parser(protocol)
    parsed = parser.parse(
        {"headers": http.headers, "status_code": http.status_code, "body": raw, "context": {"operation_name": model.name}},
        model.output_shape,
    )
    return http, parsed


class _Raw:
    """The bit of a urllib3 response AWSResponse reads its content from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self._data


# ---------------------------------------------------------------------------- EventBridge targets
def authorize_event_target(rule: Any, target: Mapping[str, Any]) -> None:
    """May EventBridge deliver ``rule``'s event to ``target``? Raises :class:`AccessDenied`.

    A Lambda target needs the function's resource policy to allow ``lambda:InvokeFunction``
    to ``events.amazonaws.com`` for this rule (``aws:SourceArn``); a Step Functions target is
    started with the target's ``RoleArn`` ("Using resource-based policies for Amazon
    EventBridge" and "Using identity-based policies for Amazon EventBridge", EventBridge
    User Guide). Other targets are not checked locally.
    """
    enforcer = active()
    if enforcer is None:
        return
    arn = str(target.get("Arn", ""))
    service = arn.split(":")[2] if arn.count(":") >= 5 else ""
    if service == "lambda":
        principal = service_principal("events.amazonaws.com", source_arn=str(rule.arn))
        enforcer.check(principal, "lambda:InvokeFunction", arn)
    elif service == "states":
        role_arn = target.get("RoleArn")
        if not role_arn:
            raise AccessDenied("events.amazonaws.com", "states:StartExecution", arn, "the target has no RoleArn")
        enforcer.check(role_principal(str(role_arn), "events"), "states:StartExecution", arn)


# ---------------------------------------------------------------------------- session collection
# Snapshots of every LocalAWS of this process (for the least-privilege report).
_COLLECTED: list[Any] = []
_COLLECTED_LOCK = threading.Lock()


def collect(enforcer: Enforcer, local: Any) -> None:
    """Keep what the report needs of one LocalAWS before its moto state goes away."""
    from modelgate_emulator import iam_report

    try:
        snapshot = iam_report.snapshot(enforcer, local)
    except Exception:  # a report problem must not fail the run it observes (logged with its traceback)
        LOG.exception("IAM: could not snapshot the authorisations of stack %s", getattr(local, "stack_name", "?"))
        return
    if snapshot is not None:
        with _COLLECTED_LOCK:
            _COLLECTED.append(snapshot)


def collected() -> list[Any]:
    with _COLLECTED_LOCK:
        return list(_COLLECTED)
