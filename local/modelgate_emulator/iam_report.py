"""The least-privilege report: every grant of every role, used or justified.

Every ``LocalAWS`` that enforces IAM leaves a :class:`Snapshot` (``iam.collect``): the
grants of the stack's IAM roles and managed policies, and the (role, action, resource)
triples it allowed. A grant is one (statement, action pattern, resource pattern) of an
Allow statement; it is *used* when an allowed request of that role matches both patterns
(IAM wildcard rules: ``*`` and ``?``, actions case-insensitive: "IAM JSON policy elements:
Action / Resource", IAM User Guide). Resource patterns are normalised to the template's
names (``${LedgerTable.Arn}``, ``${AWS::StackName}``...) so snapshots of different stacks
add up.

An unused grant needs a written reason, next to the grant in template.yaml: in the
Metadata of the resource that owns the role (the function or state machine, or the
managed policy itself)::

    Metadata:
      UnusedGrants:
        "dynamodb:DeleteItem": "why this grant is needed although no test path uses it"

keyed by the action as written in the policy (``"*"`` as a key covers every action of that
resource). The template's top-level ``Metadata.UnusedGrants`` holds reasons that apply to
every role, keyed by policy name (an AWS-managed policy's ARN, e.g. the Lambda service's own
log writing through ``AWSLambdaBasicExecutionRole``) or by action. ``python -m modelgate_emulator.iam_report DIR`` merges the JSON snapshots in DIR,
writes ``iam-report.md`` and ``iam-report.json`` there and exits 1 if a grant is unused with no
reason (denied calls are listed too).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_ROLE_OWNER_SUFFIX = "Role"
GLOBAL_REASONS = "(template)"  # reasons owner key of the template's top-level Metadata


@dataclasses.dataclass(frozen=True)
class Grant:
    owner: str  # logical id of the resource the reasons live on (function, state machine, policy)
    role: str  # logical id of the role or managed policy
    policy: str  # policy name (normalised)
    statement: int
    action: str
    resource: str  # normalised pattern
    conditional: bool = False

    @property
    def key(self) -> str:
        return "|".join([self.role, self.policy, str(self.statement), self.action, self.resource])


@dataclasses.dataclass
class Snapshot:
    stack: str
    template: str  # the template file the stack was deployed from
    grants: list[Grant]
    raw_patterns: dict[str, tuple[str, str]]  # grant key -> (action pattern, concrete resource pattern)
    used: set[str]
    denied: list[dict[str, Any]]
    reasons: dict[str, dict[str, str]]  # owner logical id -> action -> reason

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "template": self.template,
            "grants": [dataclasses.asdict(g) for g in self.grants],
            "used": sorted(self.used),
            "denied": self.denied,
            "reasons": self.reasons,
        }


# ---------------------------------------------------------------------------- matching
def iam_pattern_matches(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM wildcard match: ``*`` any run of characters, ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants_of(owner: str, role: str, policy: str, document: Mapping[str, Any]) -> list[tuple[Grant, str, str]]:
    """(grant, action pattern, concrete resource pattern) for each Allow action x resource."""
    out = []
    for index, statement in enumerate(_as_list(document.get("Statement", []))):
        if statement.get("Effect") != "Allow" or "NotAction" in statement or "NotResource" in statement:
            continue
        for action in _as_list(statement.get("Action", [])):
            for resource in _as_list(statement.get("Resource", "*")):
                grant = Grant(owner, role, policy, index, str(action), str(resource), bool(statement.get("Condition")))
                out.append((grant, str(action), str(resource)))
    return out


def mark_used(
    patterns: Mapping[str, tuple[str, str]],
    requests: Iterable[tuple[str, str] | tuple[str, str, tuple[str, ...]]],
    conditional: Mapping[str, tuple[str, str]] | None = None,
) -> set[str]:
    """Keys of the grants whose action and resource patterns match one of ``requests``.

    A request may carry the statements that allowed it (``DecisionRecord.matched``: ids
    ``<policy name>#<Sid or index>``). A grant listed in ``conditional`` (key -> (policy name,
    statement id)) is used only by a request its statement allowed: of two statements that
    differ only in a condition (``dynamodb:LeadingKeys``: the release partitions or the chain's),
    the one whose condition held is credited. A request whose allowing statements name no
    statement of that policy (matched ids from another naming) falls back to the patterns."""
    used: set[str] = set()
    requests = set(requests)
    for key, (action_pattern, resource_pattern) in patterns.items():
        for request in requests:
            action, resource = request[0], request[1]
            if not (
                iam_pattern_matches(action_pattern, action, case_sensitive=False)
                and iam_pattern_matches(resource_pattern, resource)
            ):
                continue
            if conditional and key in conditional and len(request) > 2:
                policy, statement_id = conditional[key]
                matched = request[2]  # type: ignore[misc]
                if statement_id not in matched and any(m.startswith(f"{policy}#") for m in matched):
                    continue  # another statement of the policy allowed it, this one's condition did not hold
            used.add(key)
            break
    return used


def _statement_id(policy: str, index: int, statement: Mapping[str, Any]) -> str:
    """How the evaluator names a statement in a decision's ``matched`` (``iam_policy.evaluate``)."""
    from modelgate_emulator import iam_policy

    return iam_policy._statement_id(policy, index, statement)


# ---------------------------------------------------------------------------- snapshot
class _Normaliser:
    """Concrete names of one stack -> the template's names."""

    def __init__(self, stack: Any) -> None:
        pairs: list[tuple[str, str]] = []
        for logical_id, resource in stack.resources.items():
            for name, value in (resource.attributes or {}).items():
                if isinstance(value, str) and len(value) > 6:
                    pairs.append((value, f"${{{logical_id}.{name}}}"))
            if isinstance(resource.physical_id, str) and len(resource.physical_id) > 6:
                pairs.append((resource.physical_id, f"${{{logical_id}}}"))
        pairs += [(stack.name, "${AWS::StackName}"), (stack.account_id, "${AWS::AccountId}"), (stack.region, "${AWS::Region}")]
        self.pairs = sorted(pairs, key=lambda p: -len(p[0]))

    def __call__(self, text: str) -> str:
        for concrete, symbolic in self.pairs:
            if concrete and concrete in text:
                text = text.replace(concrete, symbolic)
        return text


def load_reasons(template_path: Path) -> dict[str, dict[str, str]]:
    from modelgate_emulator.template import load_template

    template = load_template(template_path)
    reasons: dict[str, dict[str, str]] = {}
    owners = [(GLOBAL_REASONS, template)] + list((template.get("Resources") or {}).items())
    for logical_id, resource in owners:
        metadata = (resource.get("Metadata") or {}).get("UnusedGrants")
        if metadata:
            if not isinstance(metadata, dict) or not all(isinstance(v, str) and v.strip() for v in metadata.values()):
                raise ValueError(f"{logical_id}: Metadata.UnusedGrants must map actions to non-empty reasons")
            reasons[logical_id] = {str(k): " ".join(str(v).split()) for k, v in metadata.items()}
    return reasons


def snapshot(enforcer: Any, local: Any) -> Snapshot | None:
    """The grants of ``local``'s stack and what ``enforcer`` allowed (moto must still run)."""
    from moto.iam.models import iam_backends

    from modelgate_emulator import iam

    stack = local._stack
    if stack is None:
        return None
    normalise = _Normaliser(stack)
    backend = iam_backends[stack.account_id]["aws"]
    grants: list[Grant] = []
    patterns: dict[str, tuple[str, str]] = {}
    conditional: dict[str, tuple[str, str]] = {}  # grant key -> (policy name, statement id as IAM names it)
    role_by_arn: dict[str, str] = {}
    for logical_id, resource in stack.resources.items():
        documents: dict[str, Any] = {}
        owner = logical_id
        if resource.type == "AWS::IAM::Role":
            arn = resource.attributes["Arn"]
            role_by_arn[arn] = logical_id
            documents = iam._role_policies(arn, stack.account_id)
            if logical_id.endswith(_ROLE_OWNER_SUFFIX) and logical_id[: -len(_ROLE_OWNER_SUFFIX)] in stack.resources:
                owner = logical_id[: -len(_ROLE_OWNER_SUFFIX)]
        elif resource.type == "AWS::IAM::ManagedPolicy":
            policy = backend.get_policy(resource.physical_id)
            documents = {logical_id: iam.managed_policy_document(policy)}
        for name, document in documents.items():
            statements = _as_list(document.get("Statement", []))
            for grant, action, concrete in grants_of(owner, logical_id, normalise(name), document):
                grant = dataclasses.replace(grant, resource=normalise(concrete))
                grants.append(grant)
                patterns[grant.key] = (action, concrete)
                if grant.conditional:
                    conditional[grant.key] = (name, _statement_id(name, grant.statement, statements[grant.statement]))
    # Requests per role (a managed policy's grants count for the named principal holding it).
    managed_holder = {
        f"{stack.name}-local-{name}"[:64]: output_logical
        for name, output_logical in _managed_policy_principals(local, stack).items()
    }
    requests: dict[str, set[tuple[str, str, tuple[str, ...]]]] = {}
    denied: list[dict[str, Any]] = []
    for record in enforcer.records:
        role = role_by_arn.get(record.role_arn or "") or managed_holder.get((record.role_arn or "").rsplit("/", 1)[-1])
        if role is None:
            role = record.principal
        if record.allowed:
            requests.setdefault(role, set()).add((record.action, record.resource, tuple(record.matched)))
        else:
            denied.append({"role": role, "action": record.action, "resource": normalise(record.resource), "reason": record.reason})
    used: set[str] = set()
    for role, role_requests in requests.items():
        used |= mark_used({k: v for k, v in patterns.items() if k.split("|", 1)[0] == role}, role_requests, conditional)
    try:
        reasons = load_reasons(stack.template_path)
    except (OSError, ValueError):
        reasons = {}
    return Snapshot(stack.name, str(stack.template_path), grants, patterns, used, denied, reasons)


def _managed_policy_principals(local: Any, stack: Any) -> dict[str, str]:
    """Named principal -> logical id of its managed policy."""
    from modelgate_emulator.runtime import CLI_PRINCIPALS

    by_arn = {r.physical_id: lid for lid, r in stack.resources.items() if r.type == "AWS::IAM::ManagedPolicy"}
    out = {}
    for name, output in CLI_PRINCIPALS.items():
        arn = stack.outputs.get(output)
        if arn in by_arn:
            out[name] = by_arn[arn]
    return out


# ---------------------------------------------------------------------------- merge + render
@dataclasses.dataclass
class Report:
    rows: list[dict[str, Any]]  # one per grant: owner, role, policy, statement, action, resource, used, reason
    denied: list[dict[str, Any]]

    @property
    def unjustified(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r["used"] and not r["reason"]]

    @property
    def ok(self) -> bool:
        """Every grant used or justified. Denied calls are listed, not failed on: tests
        provoke some on purpose (a missing grant, CI trying to approve); a denial on a real
        path fails that path's test."""
        return not self.unjustified


def merge(snapshots: Iterable[Mapping[str, Any]]) -> Report:
    """Merge JSON snapshots (``Snapshot.to_json``): a grant is used if any snapshot used it."""
    rows: dict[str, dict[str, Any]] = {}
    reasons: dict[str, dict[str, str]] = {}
    denied: dict[tuple[str, str, str], dict[str, Any]] = {}
    for snap in snapshots:
        for owner, by_action in (snap.get("reasons") or {}).items():
            reasons.setdefault(owner, {}).update(by_action)
        used = set(snap.get("used") or [])
        for data in snap.get("grants") or []:
            grant = Grant(**data)
            row = rows.setdefault(grant.key, {**dataclasses.asdict(grant), "used": False})
            row["used"] = row["used"] or grant.key in used
        for entry in snap.get("denied") or []:
            denied.setdefault((entry["role"], entry["action"], entry["resource"]), entry)
    everywhere = reasons.get(GLOBAL_REASONS, {})
    for row in rows.values():
        by_action = reasons.get(row["owner"], {})
        # Most specific first: the grant's own action, then the reason for a whole (AWS-managed)
        # policy, then the owner's catch-all "*" (which must not speak for a managed policy's
        # grants), then a template-wide reason for the action.
        reason = (
            by_action.get(row["action"])
            or everywhere.get(row["policy"])
            or by_action.get("*")
            or everywhere.get(row["action"], "")
        )
        row["reason"] = "" if row["used"] else reason
    ordered = sorted(rows.values(), key=lambda r: (r["role"], r["policy"], r["statement"], r["action"], r["resource"]))
    return Report(ordered, list(denied.values()))


def render_markdown(report: Report) -> str:
    lines = ["# Least-privilege report", ""]
    lines.append(
        f"{sum(r['used'] for r in report.rows)} grants used, "
        f"{sum(1 for r in report.rows if not r['used'] and r['reason'])} unused with a reason, "
        f"{len(report.unjustified)} unused without one; {len(report.denied)} denied calls."
    )
    current = None
    for row in report.rows:
        if row["role"] != current:
            current = row["role"]
            lines += ["", f"## {current}", "", "| policy | # | action | resource | used | reason |", "|---|---|---|---|---|---|"]
        status = "used" if row["used"] else ("justified" if row["reason"] else "**UNUSED**")
        lines.append(
            f"| {row['policy']} | {row['statement']} | `{row['action']}` | `{row['resource']}` | {status} | {row['reason']} |"
        )
    if report.denied:
        lines += ["", "## Denied calls", "", "| role | action | resource | reason |", "|---|---|---|---|"]
        for entry in report.denied:
            lines.append(f"| {entry['role']} | `{entry['action']}` | `{entry['resource']}` | {entry['reason']} |")
    return "\n".join(lines) + "\n"


def write_session(
    directory: Path, label: str, snapshots: Iterable[Snapshot], *, template: Path | None = None
) -> Path | None:
    """Write this process's snapshots as ``DIR/<label>.json`` (None if there were none);
    with ``template``, only the stacks deployed from that file (not test fixtures or copies)."""
    wanted = str(template.resolve()) if template is not None else None
    data = [s.to_json() for s in snapshots if wanted is None or s.template == wanted]
    if not data:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{label}.json"
    path.write_text(json.dumps(data))
    return path


def build(directory: Path) -> Report:
    """Merge every session file in ``directory``; write iam-report.md and .json there."""
    snapshots: list[Mapping[str, Any]] = []
    files = sorted(p for p in directory.glob("*.json") if p.name != "iam-report.json")
    if not files:
        raise FileNotFoundError(f"no IAM session records in {directory}: run the tests or the demo first")
    for path in files:
        snapshots.extend(json.loads(path.read_text()))
    report = merge(snapshots)
    (directory / "iam-report.md").write_text(render_markdown(report))
    (directory / "iam-report.json").write_text(json.dumps({"grants": report.rows, "denied": report.denied}, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="folder of session records (build/iam)")
    args = parser.parse_args(argv)
    try:
        report = build(args.directory)
    except (FileNotFoundError, ValueError) as exc:
        print(f"iam-report: {exc}", file=sys.stderr)
        return 2
    print(render_markdown(report))
    for row in report.unjustified:
        print(f"UNUSED without a reason: {row['role']} {row['action']} on {row['resource']}", file=sys.stderr)
    for entry in report.denied:
        print(f"DENIED: {entry['role']} {entry['action']} on {entry['resource']}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
