"""What the CLI (and the demo) do: the same code against real AWS or the local runtime.

A `Control` is the stack's outputs plus boto3 clients; on AWS it is built from the
CloudFormation stack with the default credential chain, locally from `LocalAWS`.
"""

from __future__ import annotations

import contextlib
import mimetypes
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from modelgate.errors import ManifestInvalid
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
from modelgate.pipeline import approval, deps
from modelgate.policy import ReleasePolicy, ServiceConfig
from modelgate.settings import Settings
from modelgate.text import one_line

OUTPUT_KEYS = {
    "ArtifactBucketName": "artifact_bucket",
    "LedgerTableName": "ledger_table",
    "ReleasePipelineArn": "state_machine_arn",
    "ApprovalTopicArn": "approval_topic_arn",
    "ServicesPrefix": "services_prefix",
}


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
        return cls(stack_name, outputs, lru_cache(maxsize=None)(session.client), session.resource)

    @property
    def bucket(self) -> str:
        return self.outputs["ArtifactBucketName"]

    def settings(self) -> Settings:
        values = {alias.upper(): self.outputs[key] for key, alias in OUTPUT_KEYS.items()}
        values["STACK_NAME"] = self.stack_name
        return Settings.model_validate(values)

    def ledger(self) -> Ledger:
        return Ledger(self.resource("dynamodb").Table(self.outputs["LedgerTableName"]))

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
    author: str | None = None, attestation: Path | None = None,
) -> Submission:
    """What CI runs: prompt files first, then the manifest (its upload starts the release).

    The manifest object carries who uploaded it (``modelgate.approval.identity``): ``author``
    if given, else the CI actor the CI system authenticated (``$GITHUB_ACTOR`` on GitHub
    Actions), else the uploader's own identity (STS caller ARN). Never the manifest's
    ``source.author``: four eyes compares approvers with this. ``attestation``: an upstream
    stage's attestation of this artefact, put beside it first (trail.upload_attestation).
    """
    manifest, files = load_release_dir(directory, commit=commit, branch=branch)
    if attestation is not None:
        from modelgate_harness.trail import upload_attestation

        upload_attestation(control, manifest.service, manifest.source.commit, attestation.read_bytes())
    with control.acting("ci"):
        who, source = upload_author(control, author)
        return _upload(control, manifest, files, author=who, author_source=source)


def upload_author(control: Control, author: str | None = None) -> tuple[str, str]:
    """(author, source): the given or CI actor ("ci"), else the caller's ARN ("uploader")."""
    import os

    if author:
        return author, "ci"
    if os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get("GITHUB_ACTOR"):
        return os.environ["GITHUB_ACTOR"], "ci"
    return caller_identity(control), "uploader"


def _upload(
    control: Control, manifest: Manifest, files: dict[str, bytes], *, author: str, author_source: str
) -> Submission:
    from modelgate.approval.identity import AUTHOR_METADATA, AUTHOR_SOURCE_METADATA, AuthorInvalid, verified_author

    try:  # refuse here what Validate would refuse, before anything is uploaded
        verified_author({AUTHOR_METADATA: author, AUTHOR_SOURCE_METADATA: author_source})
    except AuthorInvalid as exc:
        raise ManifestInvalid(str(exc)) from exc
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
        Metadata={
            "commit": manifest.source.commit, "branch": one_line(manifest.source.branch, 200),
            AUTHOR_METADATA: author, AUTHOR_SOURCE_METADATA: author_source,
        },
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


def decide(control: Control, release_id: str, decision: str, comment: str = "") -> dict:
    """`modelgate approve/reject`: through IAM (the caller's identity is the approver)."""
    with control.acting("approver"):
        return approval.decide(control.deps(), release_id, decision, caller_identity(control), comment)


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
