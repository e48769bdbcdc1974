"""Adapter over SageMaker Model Registry: a service's model package group, one versioned model
package per release, its approval status.

What the calls accept (SageMaker API Reference):

- "CreateModelPackage" (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModelPackage.html):
  no member is required; ``ModelPackageGroupName`` makes a versioned package ("required for
  versioned models"), and ``InferenceSpecification`` (containers and model artefacts) is optional,
  so a release with no SageMaker container (a Bedrock model and prompts) registers with its
  metrics, metadata and approval status alone. ``ModelMetrics.ModelQuality.Statistics`` is a
  ``MetricsSource`` (``ContentType`` and ``S3Uri`` required). ``ClientToken`` (1-36 of
  ``[a-zA-Z0-9-]``) makes a retried call idempotent.
- ``CustomerMetadataProperties`` ("ModelPackage", API Reference): at most 50 entries, keys 1-128
  and values 1-256 characters, each of letters, numbers, separators and ``_.:/=+-@``
  (``^([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)$``); :func:`metadata_value` brings a value there.
- "UpdateModelPackage": ``ModelApprovalStatus`` is ``Approved``, ``Rejected`` or
  ``PendingManualApproval``; ``ApprovalDescription`` at most 1024 characters.
- A versioned package's ARN is ``arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>``
  ("Model Registry Models, Model Versions, and Model Groups", SageMaker Developer Guide,
  https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-models.html).
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any, Literal

from botocore.exceptions import ClientError

from modelgate.errors import error_code
from modelgate.text import one_line

ApprovalStatus = Literal["PendingManualApproval", "Approved", "Rejected"]
MAX_METADATA_ENTRIES = 50
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 256
MAX_DESCRIPTION = 1024
_METADATA_PUNCTUATION = frozenset("_.:/=+-@")


def metadata_char_allowed(ch: str) -> bool:
    """A character CustomerMetadataProperties accept: \\p{L}, \\p{Z}, \\p{N} or one of ``_.:/=+-@``."""
    return unicodedata.category(ch)[0] in "LZN" or ch in _METADATA_PUNCTUATION


def metadata_value(value: Any) -> str | None:
    """``value`` as a metadata value: each other character becomes ``_``, cut to 256; None if empty.
    (The ledger keeps the exact value; the registry's copy is for people browsing it.)"""
    text = "".join(ch if metadata_char_allowed(ch) else "_" for ch in str(value))[:MAX_METADATA_VALUE]
    return text or None


def client_token(release_id: str) -> str:
    """The release's idempotency token: 36 hex characters of its id's sha256."""
    return hashlib.sha256(release_id.encode()).hexdigest()[:36]


def ensure_group(sm: Any, group: str, description: str) -> str:
    """The group's ARN, created if it does not exist (DescribeModelPackageGroup answers a missing
    group with ValidationException). A concurrent create is fine: the group is described again."""
    try:
        return str(sm.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"])
    except ClientError as exc:
        if error_code(exc) != "ValidationException":
            raise
    try:
        return str(sm.create_model_package_group(
            ModelPackageGroupName=group, ModelPackageGroupDescription=one_line(description, MAX_DESCRIPTION)
        )["ModelPackageGroupArn"])
    except ClientError:
        return str(sm.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"])


def create_package(
    sm: Any, group: str, *, release_id: str, description: str, metadata: dict[str, Any], metrics_uri: str | None
) -> str:
    """A new version in ``group``, PendingManualApproval, idempotent per release (ClientToken)."""
    properties = {k[:MAX_METADATA_KEY]: v for k, value in metadata.items() if (v := metadata_value(value)) is not None}
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": one_line(description, MAX_DESCRIPTION),
        "ModelApprovalStatus": "PendingManualApproval",
        "CustomerMetadataProperties": dict(list(properties.items())[:MAX_METADATA_ENTRIES]),
        "ClientToken": client_token(release_id),
    }
    if metrics_uri:
        request["ModelMetrics"] = {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri}}}
    return str(sm.create_model_package(**request)["ModelPackageArn"])


def set_status(sm: Any, arn: str, status: ApprovalStatus, description: str) -> None:
    """Mirror the release's approval status on its package (idempotent)."""
    sm.update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription=one_line(description, MAX_DESCRIPTION)
    )
