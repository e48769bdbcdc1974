"""Promotion across stages: accept an artefact only if the upstream stage promoted it.

A service whose policy says ``requires_stage: staging`` is released here only when the
artefact (its manifest's bytes and every prompt file, by sha256) is the one the staging
stack promoted. The proof is staging's signed attestation (attestation.py), which CI copies
beside the artefact (``releases/<service>/<commit>/attestations/<stage>.intoto.json``,
``modelgate submit --attestation``): it is checked with the public keys this stack trusts
for that stage, never a field anyone can type. Anything else is refused at Validate
(ManifestInvalid: the release ends Invalid with the reason in the ledger).

Trust: the PEM public keys of the upstream stage's signing key(s) in this stack's SSM
parameter ``/modelgate/<stack>/trust/<stage>`` (``modelgate trust STAGE --public-key FILE``,
an operator's act; the Validate role may only read it). Several keys may be listed: during a
rotation the new key is added before upstream signs with it, and the old one removed once no
artefact waiting for promotion carries an attestation it signed.

Revocation (pipeline/revocation.py): when the upstream stage rolled the attested release back
afterwards, it signed a revocation of it, which CI carries beside the attestation
(``attestations/<stage>.revocation.intoto.json``: ``modelgate attestation --out`` fetches it,
``submit --attestation`` uploads it). One that verifies with the trusted keys and names the
attested release and this artefact refuses it; one that is there but doesn't verify refuses it
too (fail closed: only CI writes there). Absence proves nothing: production can read only
what CI passes (the README says what that leaves open).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from modelgate.adapters.s3 import object_size, read_sized
from modelgate.attestation import (
    MANIFEST_SUBJECT,
    MAX_ENVELOPE_BYTES,
    REVOCATION_PREDICATE_TYPE,
    AttestationInvalid,
    load_public_keys,
    subject_problems,
    verify_envelope,
)
from modelgate.errors import ManifestInvalid, error_code
from modelgate.manifest import ArtifactRef, Manifest
from modelgate.pipeline.deps import Deps


def upstream_attestation_key(artifact: ArtifactRef, stage: str) -> str:
    """Where CI puts the upstream stage's attestation: beside the artefact."""
    return f"{artifact.prefix}attestations/{stage}.intoto.json"


def upstream_revocation_key(artifact: ArtifactRef, stage: str) -> str:
    """Where CI puts the upstream stage's revocation of it, if there is one."""
    return f"{artifact.prefix}attestations/{stage}.revocation.intoto.json"


def trust_parameter(stack_name: str, stage: str) -> str:
    return f"/modelgate/{stack_name}/trust/{stage}"


def trusted_keys(deps: Deps, stage: str) -> list:
    """The public keys this stack trusts for ``stage``'s attestations; ManifestInvalid (the
    release can't be accepted) naming the parameter when there are none or they don't load."""
    name = trust_parameter(deps.settings.stack_name, stage)
    try:
        pem = deps.ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        raise ManifestInvalid(
            f"this stack trusts no {stage} signing key (SSM parameter {name}: {error_code(exc)}); an operator pins "
            f"it with `modelgate trust {stage} --public-key FILE`"
        ) from exc
    try:
        return load_public_keys(pem)
    except ValueError as exc:
        raise ManifestInvalid(f"the {stage} keys this stack trusts ({name}) can't be used: {exc}") from exc


def check_upstream(deps: Deps, art: ArtifactRef, service: str, manifest: Manifest, manifest_sha256: str,
                   stage: str) -> str:
    """The artefact was promoted in ``stage`` (see the module docstring): a sentence saying by
    which release, for the ledger; ManifestInvalid saying why not."""
    key = upstream_attestation_key(art, stage)
    where = f"s3://{art.bucket}/{key}"
    missing = (
        f"{service} accepts only artefacts promoted in {stage} first, and no {stage} attestation proves this one: "
        f"{where} "
    )
    try:
        found = object_size(deps.s3, art.bucket, key)
    except ClientError as exc:
        raise ManifestInvalid(missing + f"can't be read ({error_code(exc)})") from exc
    if found is None:
        raise ManifestInvalid(missing + "does not exist (CI copies it there: modelgate submit --attestation FILE)")
    size, version = found
    if size > MAX_ENVELOPE_BYTES:
        raise ManifestInvalid(f"the {stage} attestation {where} is {size:,} bytes; at most {MAX_ENVELOPE_BYTES:,}")
    keys = trusted_keys(deps, stage)
    try:
        verified = verify_envelope(read_sized(deps.s3, art.bucket, key, version, size), keys)
    except AttestationInvalid as exc:
        raise ManifestInvalid(f"the {stage} attestation {where} is not valid: {exc}") from exc
    predicate = verified.predicate
    problems = []
    if predicate.get("stage") != stage:
        problems.append(f"it attests stage {predicate.get('stage')!r}, not {stage!r}")
    if predicate.get("service") != service:
        problems.append(f"it attests service {predicate.get('service')!r}, not {service!r}")
    status = (predicate.get("outcome") or {}).get("status")
    if status != "Promoted":
        problems.append(f"the release it attests ended {status}, not Promoted")
    expected = {MANIFEST_SUBJECT: manifest_sha256, **{p.file: p.sha256 for p in manifest.prompts}}
    problems += subject_problems(expected, verified.subjects(), stage)
    if problems:
        raise ManifestInvalid(
            f"this artefact is not the one {stage} promoted ({where}): " + "; ".join(problems[:10])
        )
    check_not_revoked(deps, art, service, stage, str(predicate.get("release_id")), expected, keys)
    return (
        f"promoted in {stage} as release {predicate.get('release_id')} "
        f"(attestation signed by {verified.keyid or 'a trusted key'})"
    )


def check_not_revoked(deps: Deps, art: ArtifactRef, service: str, stage: str, release_id: str,
                      subjects: dict[str, str], keys: list) -> None:
    """ManifestInvalid when ``stage`` revoked the release that attested this artefact (see
    the module docstring); nothing when no revocation was carried, or it is of another release."""
    key = upstream_revocation_key(art, stage)
    where = f"s3://{art.bucket}/{key}"
    try:
        found = object_size(deps.s3, art.bucket, key)
    except ClientError as exc:
        raise ManifestInvalid(f"the {stage} revocation {where} can't be read ({error_code(exc)})") from exc
    if found is None:
        return
    size, version = found
    if size > MAX_ENVELOPE_BYTES:
        raise ManifestInvalid(f"the {stage} revocation {where} is {size:,} bytes; at most {MAX_ENVELOPE_BYTES:,}")
    try:
        revoked = verify_envelope(read_sized(deps.s3, art.bucket, key, version, size), keys,
                                  predicate_type=REVOCATION_PREDICATE_TYPE)
    except AttestationInvalid as exc:
        raise ManifestInvalid(
            f"a {stage} revocation is carried beside this artefact ({where}) and does not verify, so whether {stage} "
            f"took its promotion back can't be known: {exc}"
        ) from exc
    predicate = revoked.predicate
    if predicate.get("release_id") != release_id or predicate.get("service") != service \
            or predicate.get("stage") != stage or subject_problems(subjects, revoked.subjects(), stage):
        return  # another release's (the same artefact promoted again since, or another artefact): not this one
    raise ManifestInvalid(
        f"{stage} revoked its promotion of this artefact (release {release_id}): rolled back at "
        f"{predicate.get('revoked_at')} by {predicate.get('actor')}: {str(predicate.get('reason'))[:500]} ({where})"
    )
