"""Named domain errors.

The Lambda Python runtime reports an unhandled exception as ``errorType`` = the class
name, and Step Functions uses that name as the state's error: the ASL catches these by
name (``"ErrorEquals": ["GateFailed"]``). Never rename one without the ASL.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

# How much of one input-derived value an error message or a ledger record shows, and how
# long a reason may get in all. A failed task's cause travels in the execution's state
# (at most 256 KiB) and as the cause of a task failure (at most 32,768 characters, "Step
# Functions service quotas" and API_SendTaskFailure, docs.aws.amazon.com/step-functions):
# a reason that echoes a hostile input in full would fail the very step that records it.
MAX_SHOWN_CHARS = 120
MAX_REASON_CHARS = 4_000


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """An input-derived value as it may appear in an error or a record: quoted and on one
    line (``repr``: control and other non-printable characters are escaped, never emitted),
    its first ``limit`` characters at most, with its full length when it was cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def bounded(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, saying so when it was cut."""
    if len(text) <= limit:
        return text
    note = f" ... [cut: {len(text):,} characters in all]"
    return text[: limit - len(note)] + note


def validation_problems(exc: ValidationError, root: str) -> str:
    """Every problem pydantic found, each with its field path: "model.model_id: ..."."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}" for e in exc.errors())


class ModelgateError(Exception):
    """Base of every error Modelgate raises on purpose."""


class ManifestInvalid(ModelgateError):
    """The artefact's model-config.json (or a prompt file it names) is not acceptable.

    Its message is bounded (``MAX_REASON_CHARS``) whatever it quotes, so the failure can
    always travel to RecordOutcome and into the ledger."""

    def __init__(self, message: str) -> None:
        super().__init__(bounded(str(message)))


class ServiceNotRegistered(ModelgateError):
    """The artefact names a service this control plane does not manage."""


class ServiceLocked(ModelgateError):
    """Another release of the same service holds the release lock."""


class Superseded(ModelgateError):
    """A newer artefact of the same service took over; this release was cancelled cleanly."""


class LeaseLost(ModelgateError):
    """The release no longer holds its service's lease (superseded, or cancelled by hand): it
    changes neither the live alias nor any alarm any more; whoever took the lease owns them."""


class AliasConflict(ModelgateError):
    """The live alias kept changing under a fenced update (its RevisionId moved every time)."""


class ReleaseClosed(ModelgateError):
    """The release already ended (promoted, rolled back, superseded...); it can't change."""


class CandidatePublishFailed(ModelgateError):
    """The candidate Lambda version could not be published as asked."""


class DatasetInvalid(ModelgateError):
    """The service's evaluation dataset is missing or malformed."""


class EvaluationFailed(ModelgateError):
    """The evaluation could not produce a result (not: the candidate scored badly)."""


class OverBudget(ModelgateError):
    """The evaluation's estimated cost is over the policy's ``max_cost_usd``: nothing was called."""


class GateFailed(ModelgateError):
    """The candidate did not pass the service's evaluation gate."""


class ApprovalRejected(ModelgateError):
    """An approver rejected the release."""


class ApprovalTimedOut(ModelgateError):
    """No approval decision arrived before the policy's timeout."""


class CanaryAlarm(ModelgateError):
    """A canary alarm fired (or was already firing) while the candidate took traffic."""


class CanaryRegression(ModelgateError):
    """The judge found the candidate measurably worse than stable over the same window."""


class NotEnoughEvidence(ModelgateError):
    """The canary received too little traffic to judge it: never treated as healthy."""


class DecisionConflict(ModelgateError):
    """An approval decision arrived for a release that is not waiting for one."""


class ModelNotConfigured(ModelgateError):
    """The inference function has no model configuration (no release promoted yet)."""


class PromptVariableMissing(ModelgateError):
    """A request lacks a variable the prompt template needs."""


class ConfigurationError(ModelgateError):
    """The function's environment (settings) is incomplete or wrong."""


# ---------------------------------------------------------------------- AWS error codes
# SendTaskSuccess/Failure/Heartbeat on a token whose task already ended (timed out, the
# execution stopped or finished): the decision or alarm came too late, nothing to do.
TASK_GONE_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})


def error_code(exc: BaseException) -> str:
    """A botocore ClientError's code ("" for anything else)."""
    response = getattr(exc, "response", None)
    return str((response.get("Error") or {}).get("Code", "")) if isinstance(response, Mapping) else ""


THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)


class Throttled(ModelgateError):
    """The provider refused a call for now (rate or quota): retry it, never score it.

    Raise it from an invoker when the throttle arrives in some other shape (e.g. a Lambda
    function error whose errorType is ThrottlingException).
    """


def is_throttle(exc: BaseException) -> bool:
    """Whether ``exc`` is a throttle: ``Throttled``, a botocore ClientError with a throttling
    code, or any exception class named like one (boto3's modeled exceptions)."""
    if isinstance(exc, Throttled) or error_code(exc) in THROTTLE_CODES:
        return True
    return any(cls.__name__ in THROTTLE_CODES for cls in type(exc).__mro__)
