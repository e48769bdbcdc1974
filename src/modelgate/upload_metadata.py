"""What `modelgate submit` writes in the manifest object's S3 metadata, and what Validate reads back.

CI tooling reads a release's provenance from its object without parsing it: the commit, the
branch, and (when CI ran ``modelgate eval`` before uploading) the evaluation's verdict and
accuracy, as user-defined metadata (``x-amz-meta-modelgate-*``). The author is written beside
them (``modelgate.approval.identity``). Validate reads them with HeadObject, refuses an upload
whose metadata contradicts its manifest (a commit or branch other than the manifest's, an
evaluation of other prompts or another model) and records them in the ledger.

S3's rules for user-defined metadata ("Working with object metadata", Amazon S3 User Guide,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html): names are stored
lower-case and come back without the ``x-amz-meta-`` prefix through the SDK; over REST the
values must be US-ASCII; "Within the PUT request header, the user-defined metadata is limited to
2 KB in size", measured as the sum of the UTF-8 bytes of every key and value. So a branch
with other characters is percent-encoded (RFC 3986, ``%`` itself included), and
:func:`metadata_for` refuses metadata over 2 KB before anything is uploaded.

The evaluation is bound to what it evaluated: :func:`release_fingerprint` is the sha256 of the
manifest without its ``source`` (the model, its parameters and every prompt's sha256), which
``--commit`` / ``--branch`` do not change. Submit refuses a summary of another release, and so
does Validate. A policy with ``require_ci_evaluation`` also refuses an upload without a
passing evaluation (:func:`check_required`): the metadata is what CI recorded, so this holds CI
to running ``modelgate eval`` on exactly what it uploads; it proves nothing CI could not write.
"""

import hashlib
import json
import math
import string
from collections.abc import Mapping
from typing import Literal
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field

from modelgate.errors import ManifestInvalid, shown
from modelgate.manifest import Manifest

COMMIT_METADATA = "modelgate-commit"
BRANCH_METADATA = "modelgate-branch"
EVAL_VERDICT_METADATA = "modelgate-eval-verdict"
EVAL_ACCURACY_METADATA = "modelgate-eval-accuracy"
EVAL_LIVE_ACCURACY_METADATA = "modelgate-eval-live-accuracy"
EVAL_CASES_METADATA = "modelgate-eval-cases"
EVAL_RELEASE_METADATA = "modelgate-eval-release"
EVAL_METADATA = (
    EVAL_VERDICT_METADATA, EVAL_ACCURACY_METADATA, EVAL_LIVE_ACCURACY_METADATA, EVAL_CASES_METADATA,
    EVAL_RELEASE_METADATA,
)
MAX_USER_METADATA_BYTES = 2 * 1024  # "limited to 2 KB" (UsingMetadata.html)
# Printable US-ASCII kept as is in a metadata value; everything else (and "%") percent-encoded.
_SAFE = "".join(ch for ch in string.printable if ch not in string.whitespace and ch != "%") + " "


class CiEvaluation(BaseModel):
    """The evaluation CI ran before uploading (``modelgate eval --summary-json``), as recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: Literal["pass", "fail"]
    accuracy: float = Field(ge=0.0, le=1.0)
    live_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    cases: int = Field(ge=1)
    release: str = Field(pattern=r"^[0-9a-f]{64}$")  # release_fingerprint of what was evaluated


class UploadMetadata(BaseModel):
    """The provenance metadata of one manifest upload (all optional: a hand upload may carry none)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # Validate's and the CLI's

    commit: str | None = None
    branch: str | None = None
    evaluation: CiEvaluation | None = None


def release_fingerprint(manifest: Manifest) -> str:
    """sha256 of the manifest's canonical JSON without ``source``: the model, its parameters and
    every prompt file's digest. Two uploads of the same prompts and model share it, whatever
    commit or branch they were submitted with."""
    document = manifest.model_dump(mode="json", exclude={"source"})
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_value(text: str) -> str:
    """A metadata value in US-ASCII: printable ASCII kept, anything else percent-encoded (UTF-8)."""
    return quote(text, safe=_SAFE)


def _number(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"


def metadata_for(commit: str, branch: str, evaluation: CiEvaluation | None) -> dict[str, str]:
    """The provenance metadata of an upload, checked against S3's 2 KB limit for all of it
    (the author's two entries are counted by :func:`check_size`)."""
    meta = {COMMIT_METADATA: commit, BRANCH_METADATA: encode_value(branch)}
    if evaluation is not None:
        meta[EVAL_VERDICT_METADATA] = evaluation.verdict
        meta[EVAL_ACCURACY_METADATA] = _number(evaluation.accuracy)
        if evaluation.live_accuracy is not None:
            meta[EVAL_LIVE_ACCURACY_METADATA] = _number(evaluation.live_accuracy)
        meta[EVAL_CASES_METADATA] = str(evaluation.cases)
        meta[EVAL_RELEASE_METADATA] = evaluation.release
    return meta


def check_size(metadata: Mapping[str, str]) -> None:
    """ManifestInvalid when the user-defined metadata exceeds S3's 2 KB. S3 counts "the number of
    bytes in the UTF-8 encoding of each key and value", the key as defined (no ``x-amz-meta-``)."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > MAX_USER_METADATA_BYTES:
        raise ManifestInvalid(
            f"the upload's metadata would be {size:,} bytes; S3 accepts at most {MAX_USER_METADATA_BYTES:,} "
            f"(a long branch name? it is {len(metadata.get(BRANCH_METADATA, '')):,} characters encoded)"
        )


def _float(meta: Mapping[str, str], name: str) -> float:
    raw = meta[name]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ManifestInvalid(f"the upload's {name} metadata is {shown(raw, 40)}, not a number")
    return value


def read_upload_metadata(metadata: Mapping[str, str] | None) -> UploadMetadata:
    """The provenance in a manifest object's user metadata (names lower-case, prefix removed).

    Absent entries are None; a malformed one is ManifestInvalid naming it (never cleaned up
    into something else). The evaluation entries come together or not at all."""
    meta = {str(k).lower(): str(v) for k, v in (metadata or {}).items()}
    branch = meta.get(BRANCH_METADATA)
    if branch is not None and "%" in branch:
        try:
            branch = unquote(branch, errors="strict")
        except UnicodeDecodeError as exc:
            raise ManifestInvalid(f"the upload's {BRANCH_METADATA} metadata is not percent-encoded UTF-8") from exc
    present = [name for name in EVAL_METADATA if name in meta]
    evaluation = None
    if present:
        required = [n for n in EVAL_METADATA if n != EVAL_LIVE_ACCURACY_METADATA]
        missing = [n for n in required if n not in meta]
        if missing:
            raise ManifestInvalid(f"the upload's evaluation metadata is incomplete: {', '.join(missing)} missing")
        cases = meta[EVAL_CASES_METADATA]
        if not cases.isdigit():
            raise ManifestInvalid(f"the upload's {EVAL_CASES_METADATA} metadata is {shown(cases, 40)}, not a count")
        try:
            evaluation = CiEvaluation(
                verdict=meta[EVAL_VERDICT_METADATA],  # type: ignore[arg-type]
                accuracy=_float(meta, EVAL_ACCURACY_METADATA),
                live_accuracy=_float(meta, EVAL_LIVE_ACCURACY_METADATA) if EVAL_LIVE_ACCURACY_METADATA in meta else None,
                cases=int(cases),
                release=meta[EVAL_RELEASE_METADATA],
            )
        except ValueError as exc:  # pydantic's ValidationError is one
            raise ManifestInvalid(f"the upload's evaluation metadata is not valid: {shown(str(exc), 300)}") from exc
    return UploadMetadata(commit=meta.get(COMMIT_METADATA), branch=branch, evaluation=evaluation)


def check_against(upload: UploadMetadata, manifest: Manifest, where: str) -> None:
    """ManifestInvalid when the metadata says another commit, branch or release than the manifest."""
    if upload.commit is not None and upload.commit != manifest.source.commit:
        raise ManifestInvalid(
            f"{where}: the upload's {COMMIT_METADATA} metadata is {shown(upload.commit, 60)} but the manifest "
            f"names commit {manifest.source.commit}"
        )
    if upload.branch is not None and upload.branch != manifest.source.branch:
        raise ManifestInvalid(
            f"{where}: the upload's {BRANCH_METADATA} metadata is {shown(upload.branch, 60)} but the manifest "
            f"names branch {shown(manifest.source.branch, 60)}"
        )
    if upload.evaluation is not None and upload.evaluation.release != release_fingerprint(manifest):
        raise ManifestInvalid(
            f"{where}: the upload's evaluation metadata is of another release (fingerprint "
            f"{upload.evaluation.release[:12]}…, this manifest's is {release_fingerprint(manifest)[:12]}…): "
            "its model, parameters or prompts differ from what was evaluated"
        )


def check_required(upload: UploadMetadata, manifest: Manifest, where: str) -> str:
    """The policy requires a passing CI evaluation of this artefact (``require_ci_evaluation``):
    a sentence for the ledger when the upload carries one; ManifestInvalid saying what is
    missing or wrong otherwise (its fingerprint is checked by :func:`check_against` too)."""
    evaluation = upload.evaluation
    if evaluation is None:
        raise ManifestInvalid(
            f"{where}: the service requires a passing CI evaluation (require_ci_evaluation) and the upload carries "
            f"none: CI runs `modelgate eval --summary-json FILE` and `modelgate submit --eval-summary FILE`"
        )
    if evaluation.release != release_fingerprint(manifest):
        raise ManifestInvalid(
            f"{where}: the upload's CI evaluation is of another release (fingerprint {evaluation.release[:12]}…, "
            f"this manifest's is {release_fingerprint(manifest)[:12]}…)"
        )
    if evaluation.verdict != "pass":
        raise ManifestInvalid(
            f"{where}: the service requires a passing CI evaluation (require_ci_evaluation) and CI's evaluation "
            f"of this artefact failed its gate (accuracy {_number(evaluation.accuracy)} over {evaluation.cases} "
            "case(s))"
        )
    return f"CI's evaluation passed (accuracy {_number(evaluation.accuracy)} over {evaluation.cases} case(s))"
