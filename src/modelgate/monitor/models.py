"""Bedrock model lifecycle lookups (GetFoundationModel), for the watch (lifecycle.py) and Validate.

Bedrock moves a model version from Active to Legacy (and later to end of life, when calls
to it fail); ``GetFoundationModel`` answers its state in ``modelDetails.modelLifecycle.status``,
``ACTIVE`` or ``LEGACY`` ("FoundationModelLifecycle", Amazon Bedrock API Reference,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_FoundationModelLifecycle.html;
"Model lifecycle", Amazon Bedrock User Guide,
https://docs.aws.amazon.com/bedrock/latest/userguide/model-lifecycle.html).

A cross-region inference profile id (``us.anthropic...``, ``global.anthropic...``) names the
foundation model after its geography prefix ("Supported Regions and models for inference
profiles", Amazon Bedrock User Guide); that model's lifecycle is the one that counts. A
model of another provider (the local one) has no Bedrock lifecycle and is not looked up.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from modelgate.errors import ConfigurationError, ManifestInvalid, error_code
from modelgate.manifest import Manifest
from modelgate.policy import ReleasePolicy

INFERENCE_PROFILE_PREFIXES = ("us.", "eu.", "apac.", "us-gov.", "jp.", "au.", "ca.", "global.")
LEGACY = "LEGACY"


def foundation_model_id(model_id: str) -> str:
    """The foundation model behind a model id or a cross-region inference profile id."""
    for prefix in INFERENCE_PROFILE_PREFIXES:
        if model_id.startswith(prefix):
            return model_id[len(prefix):]
    return model_id


def lifecycle_status(bedrock: Any, model_id: str) -> str:
    """``ACTIVE`` or ``LEGACY`` (GetFoundationModel; ``UNKNOWN`` if it names none); a model Bedrock doesn't know is a
    ConfigurationError naming it (a pinned id that no longer resolves is itself news)."""
    try:
        details = bedrock.get_foundation_model(modelIdentifier=foundation_model_id(model_id))["modelDetails"]
    except ClientError as exc:
        if error_code(exc) in ("ResourceNotFoundException", "ValidationException"):
            raise ConfigurationError(f"Bedrock knows no foundation model {model_id!r} ({error_code(exc)})") from exc
        raise
    return str((details.get("modelLifecycle") or {}).get("status") or "UNKNOWN")


def refuse_legacy(bedrock: Any, manifest: Manifest, policy: ReleasePolicy, where: str) -> None:
    """Validate's check: ManifestInvalid when the policy refuses LEGACY models and this one is."""
    if not policy.monitoring.refuse_legacy_models or manifest.model.provider != "bedrock":
        return
    status = lifecycle_status(bedrock, manifest.model.model_id)
    if status == LEGACY:
        raise ManifestInvalid(
            f"{where}: model {manifest.model.model_id!r} is {LEGACY} on Bedrock (deprecated, heading for end of "
            "life) and the service's policy refuses new releases that pin a LEGACY model "
            "(monitoring.refuse_legacy_models); pin an ACTIVE version"
        )
