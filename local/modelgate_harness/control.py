"""What the CLI (and the demo) do: the same code against real AWS or the local runtime.

A `Control` is the stack's outputs plus boto3 clients; on AWS it is built from the
CloudFormation stack with the default credential chain, locally from `LocalAWS`.
"""

from __future__ import annotations

import contextlib
import mimetypes
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from modelgate.errors import ManifestInvalid, ModelgateError
from modelgate.evaluation.comparison import format_side
from modelgate.inference import checked_template
from modelgate.ledger import Ledger
from modelgate.manifest import (
    MANIFEST_FILENAME,
    MAX_MANIFEST_BYTES,
    MAX_PROMPT_BYTES,
    RELEASES_PREFIX,
    Manifest,
    manifest_document,
    manifest_from_document,
    manifest_too_large,
    release_id_for,
)
from modelgate.pipeline import deps
from modelgate.policy import ReleasePolicy, ServiceConfig
from modelgate.settings import Settings
from modelgate.text import one_line
from modelgate.upload_metadata import check_size, metadata_for

OUTPUT_KEYS = {
    "ArtifactBucketName": "artifact_bucket",
    "LedgerTableName": "ledger_table",
    "ReleasePipelineArn": "state_machine_arn",
    "ApprovalTopicArn": "approval_topic_arn",
    "ServicesPrefix": "services_prefix",
}

# POST body to a Function URL -> (HTTP status, body): how `modelgate approve|reject` reaches the
# decision function. On AWS a SigV4-signed HTTPS request; locally the runtime's URL.
UrlCaller = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]


@dataclass(frozen=True)
class Control:
    stack_name: str
    outputs: dict[str, str]
    client: Callable[[str], Any]
    resource: Callable[[str], Any]
    # Locally, ``act_as(name)`` runs a block as the named principal ("ci", "approver",
    # "operator": LocalAWS.acting_as); on AWS the credentials decide and it is None.
    act_as: Callable[[str], contextlib.AbstractContextManager[Any]] | None = None
    principal: str | None = None  # `--as PRINCIPAL`: every command runs as this one
    call_url: UrlCaller | None = None  # a Function URL request as the acting principal (None: AWS, signed)

    def acting(self, role: str) -> contextlib.AbstractContextManager[Any]:
        """Run a command's calls as its principal (``role``, or the ``--as`` override)."""
        if self.act_as is None:
            return contextlib.nullcontext()
        return self.act_as(self.principal or role)

    @classmethod
    def from_stack(cls, stack_name: str, session: Any) -> Control:
        cfn = session.client("cloudformation")
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        return cls(stack_name, outputs, lru_cache(maxsize=None)(session.client), session.resource,
                   call_url=lambda url, body, headers: signed_post(session, url, body, headers))

    @property
    def bucket(self) -> str:
        return self.outputs["ArtifactBucketName"]

    def settings(self) -> Settings:
        values = {alias.upper(): self.outputs[key] for key, alias in OUTPUT_KEYS.items()}
        values["STACK_NAME"] = self.stack_name
        return Settings.model_validate(values)

    def ledger(self) -> Ledger:
        """The stack's ledger. Its DynamoDB ``Table`` resource is built once per thread (boto3's
        resources are not thread-safe) and kept: building one costs a session and a client
        (~20 ms), and a watcher (`status`, the tests' waits) reads the ledger on every poll.
        Calls are authorised when made, as the acting principal, so one resource serves all."""
        local = self.__dict__.get("_per_thread")
        if local is None:  # (a frozen dataclass: kept beside the fields, never compared or copied)
            local = self.__dict__.setdefault("_per_thread", threading.local())
        table = getattr(local, "ledger_table", None)
        if table is None:
            table = local.ledger_table = self.resource("dynamodb").Table(self.outputs["LedgerTableName"])
        return Ledger(table)

    def deps(self) -> deps.Deps:
        return deps.Deps(self.settings(), self.client, self.ledger())


# ---------------------------------------------------------------------- submit
@dataclass(frozen=True)
class Submission:
    release_id: str
    key: str
    version_id: str
    uploaded: list[str]


def load_release_dir(directory: Path, *, commit: str | None, branch: str | None) -> tuple[Manifest, dict[str, bytes]]:
    """Read and check a release folder before anything is uploaded (fail fast in CI)."""
    path = directory / MANIFEST_FILENAME
    if not path.is_file():
        raise ManifestInvalid(f"{path} does not exist")
    if path.stat().st_size > MAX_MANIFEST_BYTES:  # the pipeline's own parser and caps: what fails there fails here
        raise ManifestInvalid(manifest_too_large(path.stat().st_size, str(path)))
    raw = manifest_document(path.read_bytes(), str(path))
    source = dict(raw["source"]) if isinstance(raw.get("source"), dict) else {}
    if commit:
        source["commit"] = commit
    if branch:
        source["branch"] = branch
    raw["source"] = source
    manifest = manifest_from_document(raw, str(path))
    files: dict[str, bytes] = {}
    for prompt in manifest.prompts:
        file = directory / prompt.file
        if not file.is_file():
            raise ManifestInvalid(f"prompt {prompt.name!r}: {file} does not exist")
        if file.stat().st_size > MAX_PROMPT_BYTES:
            raise ManifestInvalid(f"prompt {prompt.name!r}: {file} is {file.stat().st_size:,} bytes; at most "
                                  f"{MAX_PROMPT_BYTES:,} are accepted")
        data = file.read_bytes()
        checked_template(prompt, data, str(file))
        files[prompt.file] = data
    return manifest, files


def submit(
    control: Control, directory: Path, *, commit: str | None = None, branch: str | None = None,
    author: str | None = None, eval_summary: Path | None = None, attestation: Path | None = None,
) -> Submission:
    """What CI runs: prompt files first, then the manifest (its upload starts the release).

    The manifest object carries who uploaded it (``modelgate.approval.identity``): ``author``
    if given, else the CI actor the CI system authenticated (``$GITHUB_ACTOR`` on GitHub
    Actions), else the uploader's own identity (STS caller ARN). Never the manifest's
    ``source.author``: four eyes compares approvers with this. Beside it, the commit, the
    branch and, with ``eval_summary`` (a ``modelgate eval --summary-json`` file of this very
    folder), the evaluation's verdict and accuracy (``modelgate.upload_metadata``). ``attestation``: an upstream
    stage's attestation of this artefact, put beside it first (trail.upload_attestation), with that
    stage's revocation of it when one lies next to the file (trail.revocation_path).
    """
    from modelgate_harness.eval_summary import read_summary

    manifest, files = load_release_dir(directory, commit=commit, branch=branch)
    evaluation = read_summary(eval_summary, manifest) if eval_summary is not None else None
    provenance = metadata_for(manifest.source.commit, manifest.source.branch, evaluation)
    if attestation is not None:
        from modelgate_harness.trail import revocation_path, upload_attestation

        revoked = revocation_path(attestation)  # `modelgate attestation --out` wrote it there, if revoked
        upload_attestation(control, manifest.service, manifest.source.commit, attestation.read_bytes(),
                           revoked.read_bytes() if revoked.is_file() else None)
    with control.acting("ci"):
        who, source = upload_author(control, author)
        return _upload(control, manifest, files, author=who, author_source=source, provenance=provenance)


def upload_author(control: Control, author: str | None = None) -> tuple[str, str]:
    """(author, source): the given or CI actor ("ci"), else the caller's ARN ("uploader")."""
    import os

    if author:
        return author, "ci"
    if os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get("GITHUB_ACTOR"):
        return os.environ["GITHUB_ACTOR"], "ci"
    return caller_identity(control), "uploader"


def _upload(
    control: Control, manifest: Manifest, files: dict[str, bytes], *, author: str, author_source: str,
    provenance: dict[str, str],
) -> Submission:
    from modelgate.approval.identity import AUTHOR_METADATA, AUTHOR_SOURCE_METADATA, AuthorInvalid, verified_author

    metadata = {**provenance, AUTHOR_METADATA: author, AUTHOR_SOURCE_METADATA: author_source}
    try:  # refuse here what Validate would refuse, before anything is uploaded
        verified_author(metadata)
    except AuthorInvalid as exc:
        raise ManifestInvalid(str(exc)) from exc
    check_size(metadata)
    s3 = control.client("s3")
    prefix = f"{RELEASES_PREFIX}{manifest.service}/{manifest.source.commit}/"
    uploaded = []
    for name, data in files.items():
        s3.put_object(
            Bucket=control.bucket,
            Key=prefix + name,
            Body=data,
            ContentType=mimetypes.guess_type(name)[0] or "text/plain",
        )
        uploaded.append(prefix + name)
    key = prefix + MANIFEST_FILENAME
    put = s3.put_object(
        Bucket=control.bucket,
        Key=key,
        Body=manifest.model_dump_json(indent=2).encode(),
        ContentType="application/json",
        Metadata=metadata,
    )
    version_id = put.get("VersionId")
    if not version_id:
        raise ManifestInvalid(f"bucket {control.bucket} returned no object version: is versioning on?")
    uploaded.append(key)
    return Submission(
        release_id=release_id_for(manifest.service, manifest.source.commit, key, version_id),
        key=key,
        version_id=version_id,
        uploaded=uploaded,
    )


def put_dataset(control: Control, service: str, path: Path) -> str:
    """Upload a service's evaluation dataset where its registration says (versioned)."""
    from modelgate.evaluation.dataset import parse_dataset
    from modelgate.registry import get_service

    text = path.read_text()
    parse_dataset(text)  # refuse a malformed dataset before it reaches the bucket
    with control.acting("operator"):
        return _put_dataset(control, service, text, get_service)


def _put_dataset(control: Control, service: str, text: str, get_service: Callable[..., Any]) -> str:
    config = get_service(control.client("ssm"), control.outputs["ServicesPrefix"], service)
    put = control.client("s3").put_object(
        Bucket=control.bucket, Key=config.dataset_key, Body=text.encode(), ContentType="application/x-ndjson"
    )
    return put.get("VersionId", "")


# ---------------------------------------------------------------------- approve / reject
def caller_identity(control: Control) -> str:
    return control.client("sts").get_caller_identity()["Arn"]


class AccessDenied(ModelgateError):
    """The caller may not call the decision URL (its IAM policy has no ``lambda:InvokeFunctionUrl`` on it)."""


class DecisionFailed(ModelgateError):
    """The decision function answered with an error it does not name."""


def decide(control: Control, release_id: str, decision: str, comment: str = "") -> dict:
    """`modelgate approve/reject`: a SigV4-signed request to the decision URL (``AuthType:
    AWS_IAM``), so the approver is the identity AWS authenticated and the decision function,
    not the approver's process, holds the task token and the ledger's writes
    (functions/approval_decision). Returns ``{"release_id", "status", "approval"}``."""
    import json

    from modelgate.approval.identity import FourEyesViolation
    from modelgate.approval.links import NotAnApprover
    from modelgate.errors import DecisionConflict

    url = control.outputs.get("ApprovalDecisionUrl")
    if not url:
        raise DecisionFailed(f"stack {control.stack_name} has no output ApprovalDecisionUrl: deploy this version first")
    body = json.dumps({"release_id": release_id, "decision": decision, "comment": comment}).encode()
    with control.acting("approver"):
        caller = control.call_url or (lambda u, b, h: signed_post(_default_session(), u, b, h))
        status, raw = caller(url, body, {"Content-Type": "application/json"})
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        answer = {}
    if status == 200 and isinstance(answer, dict) and answer.get("status"):
        return answer
    message = str(answer.get("message") or answer.get("Message") or raw[:300].decode("utf-8", "replace"))
    if status == 403 and "error" not in answer:
        raise AccessDenied(
            f"{who_acts(control)} is not authorized to perform: lambda:InvokeFunctionUrl on the decision URL "
            f"({message}): attach the stack's ApproverPolicyArn to decide"
        )
    errors = {c.__name__: c for c in (DecisionConflict, FourEyesViolation, NotAnApprover)}
    raise errors.get(str(answer.get("error")), DecisionFailed)(f"HTTP {status}: {message}")


def who_acts(control: Control) -> str:
    return f"principal {control.principal or 'approver'}" if control.act_as is not None else "your identity"


def _default_session() -> Any:
    import boto3

    return boto3.Session()


def signed_post(session: Any, url: str, body: bytes, headers: dict[str, str], *, connect_to: str | None = None,
                timeout: float = 30.0) -> tuple[int, bytes]:
    """POST ``body`` to a Function URL with ``AuthType: AWS_IAM``: signed with SigV4 for service
    ``lambda`` with the session's credentials ("Invoking Lambda function URLs", Lambda Developer
    Guide: every request to an AWS_IAM URL is signed with Signature Version 4). ``connect_to``
    (``http://127.0.0.1:4566``): send it there, the URL's host still in the signed Host header
    (`modelgate local up` answers for the stack's URLs)."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = session.get_credentials()
    if credentials is None:
        raise AccessDenied("no AWS credentials found to sign the decision request (the default credential chain)")
    region = session.region_name or "us-east-1"
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials.get_frozen_credentials(), "lambda", region).add_auth(request)
    target = url
    signed = dict(request.headers.items())
    if connect_to:
        parts = urlsplit(url)
        target = connect_to.rstrip("/") + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        signed["Host"] = parts.netloc
    http_request = urllib.request.Request(target, data=body, headers=signed, method="POST")
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# ---------------------------------------------------------------------- status
def format_release(record: dict) -> str:
    """One release for a terminal: every stored string through ``one_line`` (an escape sequence
    or a newline in a branch, author, reason or comment is shown escaped, never acted on)."""
    s = one_line
    lines = [
        f"release   {s(record.get('release_id') or record['pk'].split('#', 1)[1])}",
        f"service   {s(record.get('service'))}   commit {s(record.get('commit'))}   "
        f"branch {s(record.get('branch', ''))}",
        f"status    {s(record.get('status'))}",
    ]
    if record.get("author"):
        lines.append(f"author    {s(record['author'])}")
    if record.get("reason"):
        lines.append(f"reason    {s(record['reason'])}")
    ci = record.get("ci_evaluation")
    if ci:
        live = "" if ci.get("live_accuracy") is None else f", live {ci['live_accuracy']:.3f}"
        lines.append(f"ci eval   {s(ci.get('verdict'))} before upload: accuracy {ci.get('accuracy', 0):.3f}{live} "
                     f"on {s(ci.get('cases'))} cases")
    if record.get("model_package_arn"):
        lines.append(f"registry  {s(record['model_package_arn'])} ({s(record.get('model_package_status'))})")
    ev = record.get("evaluation") or {}
    for side, metrics in (ev.get("sides") or {}).items():
        lines.append("eval      " + s(format_side(side, metrics)))
    if ev.get("report_key"):
        lines.append(f"report    {s(ev['report_key'])}")
    lines.append("history")
    for entry in record.get("history", []):
        lines.append(f"  {s(entry['at'])}  {s(entry['status']):22} {s(entry.get('actor', ''))}: {s(entry['detail'])}")
    return "\n".join(lines)


def format_table(records: list[dict]) -> str:
    header = f"{'release':42} {'status':22} {'candidate':9} {'live before':11} {'accuracy':8}  reason"
    rows = [header, "-" * len(header)]
    for r in records:
        rid = one_line(r["pk"].split("#", 1)[1])
        acc = ((r.get("evaluation") or {}).get("sides") or {}).get("candidate", {}).get("accuracy")
        acc_text = "-" if acc is None else f"{acc:.3f}"
        rows.append(
            f"{rid:42} {one_line(r.get('status', '')):22} {one_line(r.get('candidate_version', '-')):9} "
            f"{one_line(r.get('live_version', '-')):11} {acc_text:8}  "
            f"{one_line(r.get('reason') or '', 100)}"
        )
    return "\n".join(rows)


def service_timeline(ledger: Ledger, service: str, *, limit: int = 50) -> list[dict]:
    """`modelgate status SERVICE`: what happened to the service, oldest first: each release's
    status changes (its ledger history) and the monitoring journal's events (re-evaluations,
    lifecycle checks, actions, drift verdicts), the newest ``limit`` of them."""
    from modelgate.monitor.journal import Journal

    entries = []
    for record in ledger.list_releases(service=service, limit=limit):
        for change in record.get("history") or []:
            entries.append({"at": change.get("at", ""), "kind": "release", "subject": record.get("release_id", ""),
                            "what": change.get("status", ""), "detail": change.get("detail", ""),
                            "actor": change.get("actor", "")})
    for event in Journal(ledger.table).events(service, limit=limit):
        details = event.get("details") or {}
        what = details.get("verdict") or details.get("status") or details.get("action") or ""
        entries.append({"at": event.get("at", ""), "kind": event.get("kind", ""), "subject": service,
                        "what": str(what), "detail": event.get("summary", ""), "actor": "modelgate-monitor",
                        "details": details})
    return sorted(entries, key=lambda e: e["at"])[-limit:]


def format_timeline(entries: list[dict]) -> str:
    """One line per entry: when, kind, what, and the detail (one printable line each)."""
    if not entries:
        return "nothing recorded for this service yet"
    rows = []
    for e in entries:
        subject = f" {one_line(e['subject'])}" if e["kind"] == "release" else ""
        rows.append(f"{one_line(e['at'][:19])}  {one_line(e['kind']):12} {one_line(e['what']):16}{subject}  "
                    f"{one_line(e['detail'], 160)}")
    return "\n".join(rows)


def update_policy(control: Control, service: str, **overrides: object) -> ServiceConfig:
    """The operator changes a service's release policy (its registration in SSM)."""
    with control.acting("operator"):
        return _update_policy(control, service, **overrides)


def _update_policy(control: Control, service: str, **overrides: object) -> ServiceConfig:
    ssm = control.client("ssm")
    name = control.outputs["ServicesPrefix"] + service
    config = ServiceConfig.model_validate_json(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    policy = ReleasePolicy.model_validate({**config.policy.model_dump(), **overrides})
    updated = config.model_copy(update={"policy": policy})
    ssm.put_parameter(Name=name, Type="String", Overwrite=True, Value=updated.model_dump_json())
    return updated
