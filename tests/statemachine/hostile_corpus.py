"""A hostile or careless CI's uploads, as data: keys, bytes, sizes, types, duplicates, long
strings, control characters, prompts, models. Each case is uploaded to the embedded AWS the
way CI uploads (prompt files, then the manifest, with CI's role) and followed to its end.

``test_hostile_uploads.py`` runs every case and asserts what must hold for each; run this
file to print the corpus as a table (case, status, reason) from a fresh run:

    .venv/bin/python tests/statemachine/hostile_corpus.py
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelgate_harness.control import Control, update_policy
from modelgate_harness.polling import wait_until

from modelgate.chain import LedgerChain
from modelgate.errors import ManifestInvalid
from modelgate.ledger import FINAL_STATUSES
from modelgate.manifest import MAX_PROMPT_BYTES, parse_release_key, refused_release_id, release_id_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "support-bot"
SERVICE = "support-bot"
KEY = "releases/{service}/{commit}/model-config.json"
PROMPT = (EXAMPLES / "v1" / "prompts" / "system.txt").read_bytes()
Edit = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Case:
    """One hostile upload. ``key``: the manifest's key ({service}, {commit} filled in);
    ``edit``: changes v1's manifest (a dict), or returns the bytes to upload instead;
    ``prompt``: the system prompt's bytes (the manifest's digest follows them unless
    ``digest`` is given); ``policy``: the service's policy for this case; ``ci_verdict``: the
    verdict of a CI evaluation of this very manifest written in the upload's metadata (as
    ``modelgate submit --eval-summary`` writes it); ``expect``: what the ledger's reason must say."""

    name: str
    kind: str
    expect: str
    key: str = KEY
    edit: Edit | None = None
    prompt: bytes = PROMPT
    digest: str | None = None
    upload_prompt: bool = True
    policy: dict[str, Any] = field(default_factory=dict)
    ci_verdict: str | None = None
    status: str = "Invalid"


def _set(path: str, value: Any) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = doc
        for name in parents:
            target = target[name]
        target[leaf] = value

    return edit


def _bytes(data: bytes) -> Edit:
    return lambda doc: data


def _replace(old: str, new: str) -> Edit:
    return lambda doc: json.dumps(doc, indent=2).replace(old, new, 1).encode()


def _not_utf8(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode().replace(b'"main"', b'"ma\xffn"', 1)


def _padded(doc: dict[str, Any]) -> bytes:  # valid JSON: whitespace between tokens
    return json.dumps(doc).replace('"service"', " " * 3_000_000 + '"service"', 1).encode()


def _duplicate_model(doc: dict[str, Any]) -> bytes:
    text = json.dumps(doc)
    return text.replace('"model_id": ', '"model_id": "local.retrieval-large-v1:0", "model_id": ', 1).encode()


def _many_prompts(doc: dict[str, Any]) -> None:
    doc["prompts"] += [{"name": f"p{i:03d}", "file": f"prompts/p{i:03d}.txt", "sha256": "a" * 64} for i in range(200)]


CORPUS: tuple[Case, ...] = (
    # ---- keys: the release id and the execution name are made of the key
    Case("commit segment with a space", "key", "commit segment '0123abc 456' is not a git commit sha",
         key="releases/{service}/0123abc 456/model-config.json"),
    Case("commit segment with #", "key", "commit segment '0123abc#456'", key="releases/{service}/0123abc#456/model-config.json"),
    Case("commit segment with :", "key", "commit segment '0123abc:456'", key="releases/{service}/0123abc:456/model-config.json"),
    Case("commit segment with %", "key", "commit segment '0123abc%20456'",
         key="releases/{service}/0123abc%20456/model-config.json"),
    Case("commit segment with a tab", "key", "commit segment '0123abc\\t456'",
         key="releases/{service}/0123abc\t456/model-config.json"),
    Case("commit segment of 900 characters", "key", "(900 characters)", key="releases/{service}/" + "f" * 900 + "/model-config.json"),
    Case("empty commit segment", "key", "commit segment ''", key="releases/{service}//model-config.json"),
    Case("one-character commit segment", "key", "commit segment 'a'", key="releases/{service}/a/model-config.json"),
    Case("extra path segment", "key", "(1 path segment(s) too many)", key="releases/{service}/extra/{commit}/model-config.json"),
    Case("service segment not a service name", "key", "service segment 'Support_Bot' is not a service name",
         key="releases/Support_Bot/{commit}/model-config.json"),
    Case("commit segment of another commit", "key", "but was uploaded under 0123abc",
         key="releases/{service}/0123abc/model-config.json"),
    Case("service not registered", "key", "service 'other-bot' is not registered", key="releases/other-bot/{commit}/model-config.json",
         edit=_set("service", "other-bot")),
    Case("manifest names another service", "key", "names service 'other-bot' but was uploaded under 'support-bot'",
         edit=_set("service", "other-bot")),
    # ---- bytes
    Case("not JSON", "bytes", "is not valid JSON", edit=_bytes(b"{not json")),
    Case("not UTF-8", "bytes", "is not UTF-8 text", edit=_not_utf8),
    Case("a JSON array", "bytes", "must hold a JSON object, not a JSON list", edit=_bytes(b"[]")),
    Case("nested 100,000 deep", "bytes", "nested too deeply", edit=_bytes(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
    Case("NaN temperature", "bytes", "NaN is not a number JSON allows", edit=_replace('"temperature": 0.0', '"temperature": NaN')),
    Case("duplicate model_id", "duplicates", "key 'model_id' appears twice in one JSON object", edit=_duplicate_model),
    Case("unknown field", "bytes", "model.region: Extra inputs are not permitted", edit=_set("model.region", "us-east-1")),
    # ---- sizes
    Case("manifest padded to 3 MB", "size", "a manifest may be at most 262,144 bytes", edit=_padded),
    Case("201 prompt files", "size", "prompts: List should have at most 200 items", edit=_many_prompts),
    Case("prompt file over 512 KiB", "size", f"at most {MAX_PROMPT_BYTES:,} are accepted", prompt=b"x" * (MAX_PROMPT_BYTES + 1)),
    # ---- types
    Case("max_tokens as a string", "types", "parameters.max_tokens: Input should be a valid integer",
         edit=_set("parameters.max_tokens", "256")),
    Case("temperature as a boolean", "types", "parameters.temperature: Input should be a valid number",
         edit=_set("parameters.temperature", True)),
    Case("schema_version as a boolean", "types", "schema_version must be the integer 1", edit=_set("schema_version", True)),
    # ---- long strings
    Case("commit of 100,000 characters", "long strings", "source.commit: String should have at most 40 characters",
         edit=_set("source.commit", "f" * 100_000)),
    Case("model id of 100,000 characters", "long strings", "model.model_id: String should have at most 256 characters",
         edit=_set("model.model_id", "m" * 100_000 + "-v1:0")),
    Case("author of 200,000 characters", "long strings", "source.author: String should have at most 256 characters",
         edit=_set("source.author", "a" * 200_000)),
    Case("branch of 200,000 characters", "long strings", "source.branch: String should have at most 256 characters",
         edit=_set("source.branch", "b" * 200_000)),
    # ---- control characters
    Case("branch forging a line", "control chars", "branch contains the non-printable character '\\n'",
         edit=_set("source.branch", "main\nApprove: https://evil.example/")),
    Case("author with a terminal escape", "control chars", "author contains the non-printable character '\\x1b'",
         edit=_set("source.author", "\x1b[2K\x1b[1Gmallory")),
    # ---- prompts
    Case("zero-byte prompt", "prompts", "prompts/system.txt is empty (0 bytes)", prompt=b""),
    Case("blank prompt", "prompts", "has no text (3 bytes, all blank)", prompt=b" \n "),
    Case("unrenderable template", "prompts", "is not a valid template", prompt=b"Answer {question"),
    Case("template with a format spec", "prompts", "only plain {name} placeholders", prompt=b"Answer {question:>10}"),
    Case("prompt missing", "prompts", "prompts/system.txt is missing", upload_prompt=False),
    Case("prompt digest differs", "prompts", "manifest says " + "0" * 64, digest="0" * 64),
    # ---- models
    Case("model not allowed", "models", "model 'anthropic.claude-3-opus-20240229-v1:0' is not in support-bot's model allow "
         "list (allowed_models: 'local.*')", edit=_set("model.model_id", "anthropic.claude-3-opus-20240229-v1:0"),
         policy={"allowed_models": ["local.*"]}),
    Case("unpinned model", "models", "is not pinned", edit=_set("model.model_id", "anthropic.claude-latest")),
    # ---- CI's evaluation (policy require_ci_evaluation)
    Case("no CI evaluation where the policy requires one", "ci evaluation",
         "requires a passing CI evaluation (require_ci_evaluation) and the upload carries none",
         policy={"require_ci_evaluation": True}),
    Case("failed CI evaluation where the policy requires a pass", "ci evaluation",
         "CI's evaluation of this artefact failed its gate (accuracy 0.4 over 40 case(s))",
         policy={"require_ci_evaluation": True}, ci_verdict="fail"),
)


def commit_for(case: Case) -> str:
    return hashlib.sha1(f"hostile {case.name}".encode()).hexdigest()


@dataclass
class Outcome:
    case: Case
    release_id: str
    key: str
    record: dict[str, Any]
    execution: dict[str, Any] | None

    @property
    def status(self) -> str | None:
        return self.record.get("status")

    @property
    def reason(self) -> str:
        return self.record.get("reason") or ""


def manifest_bytes(case: Case, commit: str) -> bytes:
    doc = json.loads((EXAMPLES / "v1" / "model-config.json").read_text())
    doc["source"]["commit"] = commit
    doc["prompts"][0]["sha256"] = case.digest or hashlib.sha256(case.prompt).hexdigest()
    edited = case.edit(doc) if case.edit else None
    if isinstance(edited, bytes):
        return edited
    return json.dumps(doc, indent=2).encode()


def run(control: Control, case: Case, timeout: float = 300) -> Outcome:
    """Upload ``case`` as CI does, then wait until its ledger record is final and its execution
    (if one started) has ended."""
    commit = commit_for(case)
    key = case.key.format(service=SERVICE, commit=commit)
    prefix = key.rsplit("/", 1)[0] + "/"
    before = update_policy(control, SERVICE).policy.model_dump()  # what the case's policy changes is put back
    if case.policy:
        update_policy(control, SERVICE, **case.policy)
    try:
        s3 = control.client("s3")
        body = manifest_bytes(case, commit)
        with control.acting("ci"):
            if case.upload_prompt:
                s3.put_object(Bucket=control.bucket, Key=prefix + "prompts/system.txt", Body=case.prompt)
            version = s3.put_object(Bucket=control.bucket, Key=key, Body=body, Metadata=ci_metadata(case, body))[
                "VersionId"]
        release_id = _release_id(key, version)
        ledger, sfn = control.ledger(), control.client("stepfunctions")

        def ended() -> tuple[dict, dict | None] | None:
            record = ledger.get(release_id)
            if not record or record.get("status") not in FINAL_STATUSES:
                return None
            if not record.get("execution_arn"):
                # refused at intake: its final record is written before the intake chains it (so a
                # crash between the two is finished by the event's redelivery); the intake's
                # invocation has ended when the service's chain holds it
                service = record.get("service")
                if service and LedgerChain(ledger.table).recorded(service, "release", release_id) is None:
                    return None
                return record, None
            execution = sfn.describe_execution(executionArn=record["execution_arn"])
            return (record, execution) if execution["status"] != "RUNNING" else None

        record, execution = wait_until(ended, timeout, f"case {case.name!r} to end",
                                       progress=lambda: (ledger.get(release_id) or {}).get("status"))
    finally:
        if case.policy:
            update_policy(control, SERVICE, **{name: before[name] for name in case.policy})
    return Outcome(case, release_id, key, record, execution)


def ci_metadata(case: Case, body: bytes) -> dict[str, str]:
    """The upload's metadata: a CI evaluation of exactly this manifest, when the case has one."""
    if case.ci_verdict is None:
        return {}
    from modelgate.manifest import parse_manifest
    from modelgate.upload_metadata import CiEvaluation, metadata_for, release_fingerprint

    manifest = parse_manifest(body)
    evaluation = CiEvaluation(verdict=case.ci_verdict, accuracy=0.9 if case.ci_verdict == "pass" else 0.4, cases=40,
                              release=release_fingerprint(manifest))
    return metadata_for(manifest.source.commit, manifest.source.branch, evaluation)


def _release_id(key: str, version: str) -> str:
    try:
        service, commit = parse_release_key(key)
    except ManifestInvalid:  # refused at intake: the record is keyed by the key's digest
        return refused_release_id(key, version)
    return release_id_for(service, commit, key, version)


def table(outcomes: list[Outcome]) -> str:
    """The corpus as a Markdown table: case, kind, status, reason (as the ledger keeps it, cut for the page)."""
    rows = ["| case | kind | status | reason |", "|---|---|---|---|"]
    for o in outcomes:
        reason = (o.reason if len(o.reason) <= 220 else o.reason[:217] + "...").replace("|", "\\|")
        rows.append(f"| {o.case.name} | {o.case.kind} | {o.status} | {reason} |")
    return "\n".join(rows)


if __name__ == "__main__":
    from modelgate_harness.driver import sample_stack

    with sample_stack(ROOT / "template.yaml", time_factor=0.002, seed=20261130) as (_, control):
        print(table([run(control, case) for case in CORPUS]))
