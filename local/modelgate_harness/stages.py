"""One artefact from staging to production on the embedded AWS (the demo's second part, and
tests/statemachine/test_promotion_across_stages.py).

Two stacks of the same template, ``modelgate-staging`` (Stage=staging) and ``modelgate-prod``
(Stage=prod), one after the other: the embedded AWS is one moto per process, so they don't
run at the same time, and on AWS they are separate accounts anyway. What crosses from one to
the other is exactly what crosses between accounts: staging's public key (PEM, pinned in
production by an operator: `modelgate trust staging --public-key FILE`) and each promoted
artefact's attestation (CI: `modelgate attestation RELEASE --out FILE` against staging, then
`modelgate submit DIR --attestation FILE` against production).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgate_harness.control import Control, submit, update_policy
from modelgate_harness.driver import EXAMPLES, ReleaseDriver, ReleaseRun, sample_stack
from modelgate_harness.trail import fetch_attestation, stack_public_key, trust, verify_release

SERVICE = "support-bot"
STAGING_STACK, PROD_STACK = "modelgate-staging", "modelgate-prod"
# production requires staging by its template parameter (samconfig.toml's prod sets the same), not by the
# service's policy: every service of the stack does
PROD_PARAMETERS = {"RequiresStage": "staging"}
# Auto approval, all traffic at once and a short watch: the demo and the test are about what
# crosses stages, not the canary (the first part of the demo shows that).
FAST_POLICY: dict[str, Any] = {"approval": "auto", "rollout": "AllAtOnce", "post_promotion_watch_seconds": 60}


def commit_for(label: str) -> str:
    return hashlib.sha1(f"{SERVICE} stages {label}".encode()).hexdigest()


@contextmanager
def stage_stack(template: Path, stage: str, stack_name: str, *, time_factor: float, seed: int | None = None,
                parameters: dict[str, str] | None = None, **policy: Any) -> Iterator[tuple[Any, Control, ReleaseDriver]]:
    """One stage's stack (template ``parameters`` besides Stage and ApprovalMode), the sample
    service on FAST_POLICY (plus ``policy``)."""
    with sample_stack(template, time_factor=time_factor, seed=seed, stack_name=stack_name, Stage=stage,
                      ApprovalMode="auto", **(parameters or {})) as (local, control):
        update_policy(control, SERVICE, **FAST_POLICY, **policy)
        yield local, control, ReleaseDriver(control, timeout=600)


def one_byte_different(source: Path, target: Path) -> Path:
    """A copy of a release folder whose prompt has one more byte (its manifest digest updated,
    so the artefact itself is valid: only staging never saw it)."""
    shutil.copytree(source, target)
    manifest = json.loads((target / "model-config.json").read_text())
    prompt = manifest["prompts"][0]
    path = target / prompt["file"]
    path.write_bytes(path.read_bytes() + b" ")
    prompt["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (target / "model-config.json").write_text(json.dumps(manifest, indent=2))
    return target


@dataclass
class Promoted:
    """What staging hands over: the release, its attestation, staging's public key."""

    release_id: str
    commit: str
    envelope: bytes
    public_pem: bytes
    verified: bool


def promote_in_staging(template: Path, *, time_factor: float, seed: int | None = None, out=sys.stdout) -> Promoted:
    commit = commit_for("v1")
    with stage_stack(template, "staging", STAGING_STACK, time_factor=time_factor, seed=seed) as (_, control, driver):
        run = driver.release(EXAMPLES / "v1", commit=commit, decision=None)
        print(f"staging: release {run.release_id} ended {run.status} ({' -> '.join(run.path[-3:])})", file=out)
        envelope = fetch_attestation(control, run.release_id)  # CI, against staging
        public_pem = stack_public_key(control)  # once; production pins it
        report = verify_release(control, run.release_id, public_pem)
        print("\n".join(f"  {line}" for line in report.lines()), file=out)
        return Promoted(run.release_id, commit, envelope, public_pem, report.ok)


def submit_with(control: Control, folder: Path, commit: str, envelope: bytes | None) -> str:
    """CI against production: the staging attestation beside the artefact, then the artefact."""
    if envelope is None:
        return submit(control, folder, commit=commit, branch="main").release_id
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "staging.intoto.json"
        path.write_bytes(envelope)
        return submit(control, folder, commit=commit, branch="main", attestation=path).release_id


def finish(driver: ReleaseDriver, release_id: str) -> ReleaseRun:
    ledger = driver.control.ledger()
    from modelgate_harness.polling import wait_until

    record = wait_until(lambda: (r := ledger.get(release_id)) and r.get("execution_arn") and r, driver.timeout,
                        f"the intake of {release_id}")
    return driver.finish(ReleaseRun(release_id, record["execution_arn"]))


def trust_staging(control: Control, public_pem: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "staging.pem"
        path.write_bytes(public_pem)
        trust(control, "staging", path)


def edit_release_record(control: Control, release_id: str, **fields: str) -> None:
    """Someone with table access rewrites a release's record (what `verify` must catch)."""
    names = {f"#f{i}": k for i, k in enumerate(fields)}
    values = {f":f{i}": v for i, v in enumerate(fields.values())}
    control.ledger().table.update_item(
        Key={"pk": f"RELEASE#{release_id}", "sk": "RELEASE"},
        UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
        ExpressionAttributeNames=names, ExpressionAttributeValues=values,
    )


def run_stages_demo(*, time_factor: float = 0.005, template_path: Path = Path("template.yaml"), out=sys.stdout,
                    seed: int | None = 5) -> list[str]:
    """Staging promotes v1; production accepts that artefact, refuses one that skipped
    staging and one that differs by a byte; an edited ledger record fails verification.
    Returns what went otherwise (empty: all as expected)."""
    failures: list[str] = []
    print("\n== one artefact from staging to production (two stacks)", file=out)
    staged = promote_in_staging(template_path, time_factor=time_factor, seed=seed, out=out)
    if not staged.verified:
        failures.append("staging's promoted release does not verify")
    with stage_stack(template_path, "prod", PROD_STACK, time_factor=time_factor, seed=seed,
                     parameters=PROD_PARAMETERS) as (_, control, driver):
        trust_staging(control, staged.public_pem)
        print("production: the stack requires staging (RequiresStage=staging, as samconfig.toml's prod); trusts "
              "staging's key (modelgate trust staging)", file=out)
        accepted = finish(driver, submit_with(control, EXAMPLES / "v1", staged.commit, staged.envelope))
        skipped = finish(driver, submit_with(control, EXAMPLES / "v2", commit_for("v2"), None))
        with tempfile.TemporaryDirectory() as tmp:
            changed = one_byte_different(EXAMPLES / "v1", Path(tmp) / "v1-changed")
            differs = finish(driver, submit_with(control, changed, commit_for("v1-changed"), staged.envelope))
        for label, run, expected in (("the artefact staging promoted", accepted, "Promoted"),
                                     ("an artefact that skipped staging", skipped, "Invalid"),
                                     ("v1 with one byte more in its prompt", differs, "Invalid")):
            why = run.record.get("reason") or next(
                (h["detail"] for h in run.record.get("history", []) if h["status"] == "Validated"), "")
            print(f"production: {label}: {run.status}\n   {why[:300]}", file=out)
            if run.status != expected:
                failures.append(f"production: {label} ended {run.status}, expected {expected}")
        edit_release_record(control, accepted.release_id, reason="approved by the CEO")
        report = verify_release(control, accepted.release_id)  # production's own key (kms:GetPublicKey)
        print("production: after someone edits the promoted release's reason in the table:", file=out)
        print("\n".join(f"  {line}" for line in report.lines()), file=out)
        if report.ok:
            failures.append("an edited ledger record still verifies")
    return failures
