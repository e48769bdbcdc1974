"""The audit trail from outside: `modelgate verify`, `audit`, `attestation`, `public-key`, `trust`.

``verify RELEASE`` checks, from the ledger table, the artefact bucket and the stack's public
key (a PEM file: then nothing but reads; else one kms:GetPublicKey):
  1. the service's hash chain is intact from its first record to its head (chain.py);
  2. the release is chained, and its ledger record says what its newest chain record says;
  3. its attestation's signature verifies with the public key (offline, ``cryptography``);
  4. the attestation names this release, its chain record (seq and hash) and its outcome;
  5. its subjects are the artefact's bytes: the manifest's pinned version re-hashed from S3,
     and every prompt digest that manifest names.
Every check is reported, failed or not, with its reason. A release that ended on a path that
signs nothing (superseded in flight, refused at intake, a manifest over Attest's hashing cap)
verifies on its chain record alone: that record says so (``unattested``; ``audit`` lists it
too), and being chained it can't be claimed afterwards for a release whose attestation is
missing (the Attest step failed: the ledger's ``attestation_error`` says why, and verify fails).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelgate_harness.control import Control

from modelgate.attestation import (
    REVOCATION_PREDICATE_TYPE,
    AttestationInvalid,
    attestation_key,
    load_public_keys,
    public_key_pem,
    verify_envelope,
)
from modelgate.chain import ChainRecord, LedgerChain, release_problems, verify_chain
from modelgate.errors import ModelgateError
from modelgate.ledger import FINAL_STATUSES
from modelgate.manifest import MANIFEST_FILENAME, RELEASES_PREFIX, manifest_document
from modelgate.pipeline.revocation import request_revocation, revocation_key
from modelgate.pipeline.upstream import trust_parameter


class TrailError(ModelgateError):
    """What the trail commands can't do (no such release, no key output)."""


@dataclass
class Verification:
    release_id: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def add(self, name: str, problems: list[str], ok_detail: str) -> None:
        self.checks.append((name, not problems, "; ".join(problems) if problems else ok_detail))

    def lines(self) -> list[str]:
        out = [f"release {self.release_id}: {'VERIFIED' if self.ok else 'NOT VERIFIED'}"]
        out += [f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}" for name, ok, detail in self.checks]
        return out


def stack_public_key(control: Control) -> bytes:
    """The stack's signing key's public half as PEM (kms:GetPublicKey, once)."""
    arn = control.outputs.get("SigningKeyArn")
    if not arn:
        raise TrailError(f"stack {control.stack_name} has no output SigningKeyArn: deploy this version first")
    with control.acting("operator"):
        return public_key_pem(control.client("kms"), arn)


def read_attestation(control: Control, service: str, release_id: str, role: str = "operator", *,
                     key: str | None = None) -> bytes | None:
    """The release's attestation (or the object at ``key``: its revocation); None if absent."""
    from botocore.exceptions import ClientError

    try:
        with control.acting(role):
            body = control.client("s3").get_object(Bucket=control.bucket, Key=key or attestation_key(service, release_id))
            return body["Body"].read()
    except ClientError:
        return None


def verify_release(control: Control, release_id: str, public_pem: bytes | None = None) -> Verification:
    """The five checks of the module docstring, each reported."""
    report = Verification(release_id)
    with control.acting("operator"):
        release = control.ledger().get(release_id)
        if release is None:
            raise TrailError(f"no release {release_id} in the ledger of stack {control.stack_name}")
        service = str(release.get("service") or "")
        records, broken, head = LedgerChain(control.ledger().table).read(service)
    check = verify_chain(service, records, head, broken)
    report.add(f"chain of {service}", check.problems, f"{len(check.records)} record(s), intact to its head")
    mine = [r for r in records if r.release_id == release_id]
    if not mine:
        report.add("release chained", [f"release {release_id} has no chain record (status {release.get('status')})"],
                   "")
    else:
        report.add("release chained", release_problems(release, mine[-1]),
                   f"record {mine[-1].seq} ({mine[-1].kind}) matches the ledger record")
    envelope = read_attestation(control, service, release_id)
    if envelope is None:
        ended = next((r for r in reversed(mine) if r.kind == "release"), None)
        unattested = ended.body.get("unattested") if ended else None
        if unattested:  # a path that signs nothing (chained: it can't be claimed after the fact)
            report.add("attestation", [], f"none, by design: {unattested} (chain record {ended.seq})")
            return report
        missing = [f"no attestation at s3://{control.bucket}/{attestation_key(service, release_id)}"]
        if release.get("attestation_error"):
            missing.append(f"the ledger says: {release['attestation_error']}")
        report.add("attestation", missing, "")
        return report
    pem = public_pem if public_pem is not None else stack_public_key(control)
    try:
        verified = verify_envelope(envelope, load_public_keys(pem))
    except (AttestationInvalid, ValueError) as exc:
        report.add("attestation signature", [str(exc)], "")
        return report
    report.add("attestation signature", [], f"verifies with the public key (keyid {verified.keyid})")
    release_record = next((r for r in mine if r.kind == "release"), None)
    report.add("attestation names the chain record", _names_record(verified.predicate, release_id, release_record),
               f"release {release_id}, record {release_record.seq if release_record else '?'}")
    report.add("attested artefact", _artefact_problems(control, release, verified.subjects()),
               f"{len(verified.subjects())} subject(s) match the artefact's bytes")
    report.add("not revoked", _revocation_problems(control, service, release_id, pem),
               "the stack signed no revocation of it")
    return report


def _revocation_problems(control: Control, service: str, release_id: str, pem: bytes) -> list[str]:
    """The release's revocation (pipeline/revocation.py), if the stack signed one: a revoked
    release fails verify (a downstream stage must not take it); one that doesn't verify too."""
    key = revocation_key(service, release_id)
    envelope = read_attestation(control, service, release_id, key=key)
    if envelope is None:
        return []
    try:
        revoked = verify_envelope(envelope, load_public_keys(pem), predicate_type=REVOCATION_PREDICATE_TYPE)
    except (AttestationInvalid, ValueError) as exc:
        return [f"s3://{control.bucket}/{key} is there and does not verify: {exc}"]
    predicate = revoked.predicate
    if predicate.get("release_id") != release_id:
        return [f"s3://{control.bucket}/{key} revokes release {predicate.get('release_id')!r}, not this one"]
    seq = (predicate.get("ledger") or {}).get("seq")
    return [f"revoked: rolled back at {predicate.get('revoked_at')} by {predicate.get('actor')}: "
            + f"{str(predicate.get('reason'))[:300]} (chain record {seq})"]


def _names_record(predicate: dict[str, Any], release_id: str, record: ChainRecord | None) -> list[str]:
    problems = []
    if predicate.get("release_id") != release_id:
        problems.append(f"it attests release {predicate.get('release_id')!r}")
    if record is None:
        return [*problems, "the release has no chain record of its end to compare with"]
    ledger = predicate.get("ledger") or {}
    if ledger.get("record_sha256") != record.record_hash or ledger.get("seq") != record.seq:
        problems.append(f"it names chain record {ledger.get('seq')} {ledger.get('record_sha256')}, the chain holds "
                        f"record {record.seq} {record.record_hash}")
    status = (predicate.get("outcome") or {}).get("status")
    if status != record.body.get("status"):
        problems.append(f"it attests outcome {status}, the chain record says {record.body.get('status')}")
    return problems


def _artefact_problems(control: Control, release: dict[str, Any], subjects: dict[str, str]) -> list[str]:
    from botocore.exceptions import ClientError

    artifact = release.get("artifact") or {}
    if not artifact.get("key"):
        return ["the ledger record names no artefact"]
    try:
        with control.acting("operator"):
            data = control.client("s3").get_object(Bucket=artifact["bucket"], Key=artifact["key"],
                                                   VersionId=artifact["version_id"])["Body"].read()
    except ClientError as exc:
        return [f"the artefact's manifest can't be read to re-hash it: {exc}"]
    problems = []
    digest = hashlib.sha256(data).hexdigest()
    if subjects.get(MANIFEST_FILENAME) != digest:
        problems.append(f"{MANIFEST_FILENAME}: attested {subjects.get(MANIFEST_FILENAME)}, the object is {digest}")
    try:
        prompts = {p["file"]: p["sha256"] for p in manifest_document(data).get("prompts", [])}
    except (ModelgateError, KeyError, TypeError):
        prompts = {}
    for name, sha in subjects.items():
        if name != MANIFEST_FILENAME and prompts.get(name) != sha:
            problems.append(f"{name}: attested {sha}, the manifest names {prompts.get(name)}")
    return problems


# ---------------------------------------------------------------------- audit
AUDIT_COLUMNS = ("seq", "at", "kind", "release_id", "status", "reason", "commit", "model_id", "candidate_version",
                 "live_version", "approver", "unattested", "record_hash", "prev_hash", "chain_status")


def audit_rows(control: Control, service: str, since: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(one row per chain record since ``since`` (ISO date or time), then ended releases that are
    not chained; the chain's problems). Each row's chain_status is "ok", the problem naming
    its record, or "unchained"."""
    with control.acting("operator"):
        records, broken, head = LedgerChain(control.ledger().table).read(service)
        releases = control.ledger().list_releases(service=service, limit=1000)
    check = verify_chain(service, records, head, broken)
    bad = check.broken_at()
    rows = []
    for record in check.records:
        if since and record.at < since:
            continue
        body = record.body
        rows.append({
            "seq": record.seq, "at": record.at, "kind": record.kind, "release_id": record.release_id,
            "status": body.get("status"), "reason": body.get("reason"), "commit": body.get("commit"),
            "model_id": body.get("model_id"), "candidate_version": body.get("candidate_version"),
            "live_version": body.get("live_version"), "approver": (body.get("approval") or {}).get("approver"),
            "unattested": body.get("unattested"),  # why it has no attestation, when it ended on a path that signs none
            "record_hash": record.record_hash, "prev_hash": record.prev_hash,
            "chain_status": bad.get(record.seq, "ok"),
        })
    chained = {r.release_id for r in check.records}
    for release in sorted(releases, key=lambda r: r.get("created_at", "")):
        if release.get("status") in FINAL_STATUSES and release["release_id"] not in chained \
                and (not since or str(release.get("updated_at", "")) >= since):
            rows.append({
                "seq": None, "at": release.get("updated_at"), "kind": "release", "release_id": release["release_id"],
                "status": release.get("status"), "reason": release.get("reason"), "commit": release.get("commit"),
                "model_id": release.get("model_id"), "candidate_version": release.get("candidate_version"),
                "live_version": release.get("live_version"),
                "approver": (release.get("approval") or {}).get("approver"), "unattested": release.get("unattested"),
                "record_hash": None, "prev_hash": None,
                "chain_status": "unchained (ended with no chain record: before every path that ends a release chained it)",
            })
    return rows, check.problems


def audit_text(rows: list[dict[str, Any]], problems: list[str], service: str, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"service": service, "chain_intact": not problems, "chain_problems": problems,
                           "records": rows}, indent=2, default=str)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=AUDIT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in AUDIT_COLUMNS})
    return out.getvalue()


# ---------------------------------------------------------------------- trust, carrying attestations
def trust(control: Control, stage: str, pem_file: Path, *, replace: bool = False) -> list[str]:
    """Pin ``stage``'s public key(s) in this stack (added to the keys already trusted, so a
    rotation has both for a while; ``replace``: only these). Returns the PEM blocks now trusted."""
    from botocore.exceptions import ClientError

    new = pem_file.read_text()
    load_public_keys(new)  # refuse anything that is not a P-256 public key before writing
    name = trust_parameter(control.stack_name, stage)
    with control.acting("operator"):
        ssm = control.client("ssm")
        current = ""
        if not replace:
            try:
                current = ssm.get_parameter(Name=name)["Parameter"]["Value"]
            except ClientError:
                current = ""
        blocks = []
        for block in _pem_blocks(current) + _pem_blocks(new):
            if block not in blocks:
                blocks.append(block)
        ssm.put_parameter(Name=name, Type="String", Value="\n".join(blocks), Overwrite=True,
                          Description=f"Modelgate: public keys trusted for {stage}'s release attestations")
    return blocks


def _pem_blocks(text: str) -> list[str]:
    end = "-----END PUBLIC KEY-----"
    return [b.strip() + "\n" + end for b in text.split(end) if "BEGIN PUBLIC KEY" in b]


def fetch_attestation(control: Control, release_id: str) -> bytes:
    """The release's attestation envelope (CI carries it to the next stage). The service is
    the release id's first part (``<service>-<commit12>-<digest10>``, manifest.release_id_for)."""
    service = release_id.rsplit("-", 2)[0]
    with control.acting("ci"):
        envelope = read_attestation(control, service, release_id, role="ci")
    if envelope is None:
        raise TrailError(f"release {release_id} has no attestation at s3://{control.bucket}/"
                         f"{attestation_key(service, release_id)}")
    return envelope


def fetch_revocation(control: Control, release_id: str) -> bytes | None:
    """The release's revocation envelope, if its stack signed one (CI carries it beside the
    attestation, so the next stage refuses the artefact: pipeline/upstream.py)."""
    service = release_id.rsplit("-", 2)[0]
    return read_attestation(control, service, release_id, role="ci", key=revocation_key(service, release_id))


def revocation_path(attestation: Path) -> Path:
    """Where `modelgate attestation --out FILE` writes the revocation, and `submit --attestation
    FILE` looks for it: FILE's name with ``.revocation.json`` for its last suffix."""
    return attestation.with_name(attestation.stem + ".revocation.json")


def _statement_stage(envelope: bytes, what: str) -> str:
    try:
        document = json.loads(envelope)
        import base64

        statement = json.loads(base64.b64decode(document["payload"]))
        return str(statement["predicate"]["stage"])
    except (ValueError, KeyError, TypeError) as exc:
        raise TrailError(f"not {what} envelope (DSSE, in-toto statement): {exc}") from None


def upload_attestation(control: Control, service: str, commit: str, envelope: bytes,
                       revocation: bytes | None = None) -> str:
    """Put an upstream stage's attestation beside the artefact (before its manifest): where
    Validate looks for it (pipeline/upstream.py), and with it that stage's revocation of it
    when CI carries one. The stage is read from the statement to name the file; signatures are
    checked by the stack, not here."""
    stage = _statement_stage(envelope, "an attestation")
    prefix = f"{RELEASES_PREFIX}{service}/{commit}/attestations/{stage}"
    uploads = [(f"{prefix}.intoto.json", envelope)]
    if revocation is not None:
        if _statement_stage(revocation, "a revocation") != stage:
            raise TrailError(f"the revocation is not of stage {stage}, as the attestation is")
        uploads.append((f"{prefix}.revocation.intoto.json", revocation))
    with control.acting("ci"):
        for key, body in uploads:
            control.client("s3").put_object(Bucket=control.bucket, Key=key, Body=body, ContentType="application/json")
    return uploads[0][0]


def revoke(control: Control, release_id: str) -> dict[str, Any]:
    """Ask the stack's Attest function to revoke a rolled-back release (operator); idempotent."""
    function = control.outputs.get("AttestFunctionName")
    if not function:
        raise TrailError(f"stack {control.stack_name} has no output AttestFunctionName: deploy this version first")
    service = release_id.rsplit("-", 2)[0]
    with control.acting("operator"):
        return request_revocation(control.client("lambda"), function, service, release_id)
