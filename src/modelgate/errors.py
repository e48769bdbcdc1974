"""Named domain errors.

The Lambda Python runtime reports an unhandled exception as ``errorType`` = the class
name, and Step Functions uses that name as the state's error: the ASL catches these by
name (``"ErrorEquals": ["GateFailed"]``). Never rename one without the ASL.
"""

from __future__ import annotations


class ModelgateError(Exception):
    """Base of every error Modelgate raises on purpose."""


class ManifestInvalid(ModelgateError):
    """The artefact's model-config.json (or a prompt file it names) is not acceptable."""


class ServiceNotRegistered(ModelgateError):
    """The artefact names a service this control plane does not manage."""


class ServiceLocked(ModelgateError):
    """Another release of the same service holds the release lock."""


class Superseded(ModelgateError):
    """A newer artefact of the same service took over; this release was cancelled cleanly."""


class ReleaseClosed(ModelgateError):
    """The release already ended (promoted, rolled back, superseded...); it can't change."""


class CandidatePublishFailed(ModelgateError):
    """The candidate Lambda version could not be published as asked."""


class DatasetInvalid(ModelgateError):
    """The service's evaluation dataset is missing or malformed."""


class EvaluationFailed(ModelgateError):
    """The evaluation could not produce a result (not: the candidate scored badly)."""


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
