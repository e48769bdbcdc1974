"""`modelgate`: submit, status, approve / reject, invoke, logs, dataset, verify, audit, demo.

Against AWS the commands use the default credential chain and the stack's outputs
(--stack / MODELGATE_STACK). With --local (MODELGATE_LOCAL) they talk to a running
`modelgate local up` instead, --stack choosing among the stacks its state file names.
`invoke` and `demo` run on the embedded local runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from modelgate.errors import ModelgateError
from modelgate.text import one_line

SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")  # a service name (modelgate.manifest)
DEFAULT_AWS_STACK = "modelgate"


def _control(args: argparse.Namespace):
    import boto3
    from modelgate_harness.control import Control

    if args.local:
        from modelgate_harness.server import control_from_state

        control = control_from_state(Path(args.local_state), args.stack)
    else:
        session = boto3.Session(profile_name=args.profile, region_name=args.region)
        control = Control.from_stack(args.stack or DEFAULT_AWS_STACK, session)
    return with_principal(control, args)


def with_principal(control, args: argparse.Namespace):
    """The control with the `--as PRINCIPAL` override applied (locally: who runs the command)."""
    import dataclasses

    principal = getattr(args, "as_principal", None)
    return dataclasses.replace(control, principal=principal) if principal else control


def cmd_submit(args: argparse.Namespace) -> int:
    from modelgate_harness.control import submit

    result = submit(
        _control(args), Path(args.directory), commit=args.commit, branch=args.branch, author=args.author,
        eval_summary=Path(args.eval_summary) if args.eval_summary else None,
        attestation=Path(args.attestation) if args.attestation else None,
    )
    for key in result.uploaded:
        print(f"uploaded {key}", file=sys.stderr)
    print(result.release_id)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """The chain and the attestation of one release; exit 1 when anything fails to verify."""
    from modelgate_harness.trail import verify_release

    public = Path(args.public_key).read_bytes() if args.public_key else None
    report = verify_release(_control(args), args.release, public)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def cmd_audit(args: argparse.Namespace) -> int:
    """A service's trail for auditors (JSON or CSV), with its chain's status; exit 1 if broken."""
    from modelgate_harness.trail import audit_rows, audit_text

    rows, problems = audit_rows(_control(args), args.service, args.since)
    sys.stdout.write(audit_text(rows, problems, args.service, args.format))
    for problem in problems:
        print(f"modelgate: chain of {args.service}: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_attestation(args: argparse.Namespace) -> int:
    from modelgate_harness.trail import fetch_attestation, fetch_revocation, revocation_path

    control = _control(args)
    envelope = fetch_attestation(control, args.release)
    revocation = fetch_revocation(control, args.release)
    if args.out:
        Path(args.out).write_bytes(envelope)
        print(f"wrote {args.out}", file=sys.stderr)
        revoked = revocation_path(Path(args.out))
        if revocation is not None:  # submit --attestation carries it beside the attestation
            revoked.write_bytes(revocation)
            print(f"the stage REVOKED this release: wrote its revocation to {revoked}", file=sys.stderr)
        elif revoked.is_file():  # a stale one from an earlier run must not travel with this attestation
            revoked.unlink()
            print(f"removed {revoked}: this release is not revoked", file=sys.stderr)
    else:
        sys.stdout.write(envelope.decode() + "\n")
        if revocation is not None:
            print(f"the stage REVOKED release {args.release} (use --out to save its revocation too)", file=sys.stderr)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """Sign the revocation of a rolled-back release (again): `modelgate rollback` does it itself."""
    from modelgate_harness.trail import revoke

    result = revoke(_control(args), args.release)
    if result.get("revoked"):
        print(f"release {args.release} revoked: {result['key']}")
    else:
        print(f"release {args.release}: nothing to revoke ({result.get('why')})")
    return 0


def cmd_public_key(args: argparse.Namespace) -> int:
    from modelgate_harness.trail import stack_public_key

    pem = stack_public_key(_control(args))
    if args.out:
        Path(args.out).write_bytes(pem)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(pem.decode())
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    from modelgate_harness.trail import trust

    blocks = trust(_control(args), args.stage, Path(args.public_key), replace=args.replace)
    print(f"this stack now trusts {len(blocks)} {args.stage} key(s)", file=sys.stderr)
    return 0


def cmd_revoke_signing_key(args: argparse.Namespace) -> int:
    """Every approval link signed so far stops working at once (a key leaked)."""
    from modelgate.approval.keys import revoke_signing_keys

    control = _control(args)
    secret = control.outputs.get("ApprovalSigningSecretArn")
    if not secret:
        raise SystemExit(
            f"modelgate: stack {control.stack_name} has no output ApprovalSigningSecretArn: deploy this version first"
        )
    with control.acting("operator"):
        version = revoke_signing_keys(control.client("secretsmanager"), secret)
    print(f"approval links revoked: the signing key is new (secret version {version}) and the previous one is "
          "out of service; releases waiting for approval are decided with `modelgate approve|reject`")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    control = _control(args)
    with control.acting("operator"):
        return _status(control.ledger(), args)


def _status(ledger, args: argparse.Namespace) -> int:
    from modelgate_harness.control import format_release, format_table

    if args.release:
        record = _get_waiting(ledger, args.release, args.wait)
        if record is None and SERVICE_NAME.fullmatch(args.release):
            from modelgate_harness.control import format_timeline, service_timeline

            entries = service_timeline(ledger, args.release, limit=args.limit)
            if entries:
                print(json.dumps(entries, indent=2, default=str) if args.json else format_timeline(entries))
                return 0
        if record is None:
            print(f"no release or service {args.release} in the ledger", file=sys.stderr)
            return 1
        print(json.dumps(record, indent=2, default=str) if args.json else format_release(record))
    else:
        records = ledger.list_releases(service=args.service, limit=args.limit)
        print(json.dumps(records, indent=2, default=str) if args.json else format_table(records))
    return 0


def _get_waiting(ledger, release: str, wait: float, sleep=None, monotonic=None):
    """The release's record; with ``wait`` > 0, asked again until it exists or ``wait`` seconds pass.

    A release id is known as soon as `submit` uploaded the manifest, but its record is written by
    the intake function, which the upload starts through EventBridge: on AWS that delivery takes
    a moment ("Amazon EventBridge events", S3 User Guide: delivered "typically within seconds"),
    so CI asks with --wait rather than failing on a record not written yet.
    """
    import time

    sleep = sleep or time.sleep
    monotonic = monotonic or time.monotonic
    deadline = monotonic() + max(0.0, wait)
    interval = 0.5
    while True:
        record = ledger.get(release)
        left = deadline - monotonic()
        if record is not None or left <= 0:
            return record
        sleep(min(interval, left))
        interval = min(interval * 2, 5.0)


def cmd_decide(args: argparse.Namespace) -> int:
    from modelgate_harness.control import decide

    record = decide(_control(args), args.release, args.command, args.comment or "")
    print(one_line(f"{args.release}: {record['status']} by {record['approval']['approver']}"))
    return 0


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in (0, 1]")
    return value


def _seconds(text: str) -> float:
    """A number of seconds from 0 to 900 (a CI step should not wait longer for one record)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.0 <= value <= 900.0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds from 0 to 900")
    return value


def _iso_moment(text: str) -> str:
    """An ISO 8601 date or date and time, as given (the trail compares ISO strings)."""
    from datetime import datetime

    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or time (e.g. 2026-11-30 or 2026-11-30T09:00:00+00:00)"
        ) from None
    return text


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a release folder before anything is uploaded (what an engineer runs before pushing)."""
    from modelgate_harness.local_eval import run_local_eval

    from modelgate.evaluation.comparison import format_side
    from modelgate.evaluation.model_scorers import scoring_models_for
    from modelgate.evaluation.report import render_html
    from modelgate.policy import ReleasePolicy

    policy = (
        ReleasePolicy.model_validate_json(Path(args.policy).read_text()) if args.policy else ReleasePolicy()
    )
    if args.plan:
        from modelgate_harness.local_eval import plan_cost_lines, plan_local_eval

        for line in plan_local_eval(
            Path(args.dataset), policy=policy, live_accuracy=args.live_accuracy, discordance=args.discordance
        ):
            print(line.statement)
        if not Path(args.directory).is_dir():
            # the power needs only the dataset; the cost needs the release's prompts and model
            print(f"cost: not estimated (no release folder at {args.directory})")
            return 0
        for cost_line in plan_cost_lines(
            Path(args.directory), Path(args.dataset), live_dir=Path(args.live) if args.live else None, policy=policy
        ):
            print(cost_line)
        return 0
    report, verdict = run_local_eval(
        Path(args.directory),
        Path(args.dataset),
        live_dir=Path(args.live) if args.live else None,
        policy=policy,
        concurrency=args.concurrency,
        scoring_models=scoring_models_for(args.scoring) if args.scoring else None,
    )
    summary = report.summary()
    for name, metrics in summary["sides"].items():
        print(format_side(name, metrics))
    for criterion in verdict.criteria:
        print(f"{criterion.verdict:15} {criterion.name}: {criterion.message}")
    if verdict.multiple_comparisons:
        print(f"multiple comparisons: {verdict.multiple_comparisons}")
    if args.html:
        Path(args.html).write_text(render_html(report, verdict, title=f"{args.directory} evaluation", policy=policy))
        print(f"report: {args.html}")
    if args.summary_json or args.summary_markdown:
        _write_summaries(args, report, verdict)
    print("gate: PASS" if verdict.passed else "gate: FAIL")
    return 0 if verdict.passed else 1


def _write_summaries(args: argparse.Namespace, report, verdict) -> None:
    """`--summary-json` (for `submit --eval-summary`) and `--summary-markdown` (the PR comment)."""
    from modelgate_harness.control import load_release_dir
    from modelgate_harness.eval_summary import summary_document, summary_markdown

    manifest, _ = load_release_dir(Path(args.directory), commit=None, branch=None)
    document = summary_document(report, verdict, manifest, release_dir=args.directory, live_dir=args.live)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(document, indent=2) + "\n")
        print(f"summary: {args.summary_json}")
    if args.summary_markdown:
        Path(args.summary_markdown).write_text(summary_markdown(document))
        print(f"comment: {args.summary_markdown}")


def cmd_rollback(args: argparse.Namespace) -> int:
    from modelgate_harness.control import caller_identity

    from modelgate.pipeline import outcome

    control = _control(args)
    with control.acting("operator"):
        result = outcome.rollback_service(control.deps(), args.service, caller_identity(control), args.comment)
    print(one_line(f"{args.service}: version {result['from_version']} -> {result['to_version']} "
                   f"(release {result['release_id']} {result['status']})"))
    if result["status"] != "RolledBack" or not result.get("release_id"):
        return 0
    # a promoted release taken back: its attestation must stop a downstream stage (pipeline/revocation.py)
    from botocore.exceptions import ClientError
    from modelgate_harness.trail import revoke

    try:
        revoked = revoke(control, result["release_id"])
    except (ModelgateError, ClientError) as exc:
        print(f"modelgate: rolled back, but the revocation failed: {exc}; run `modelgate revoke "
              f"{result['release_id']}`", file=sys.stderr)
        return 1
    if revoked.get("revoked"):
        print(f"release {result['release_id']} revoked: {revoked['key']}")
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    """The latest drift verdict of a service (the scheduled check's latest.json) and its report."""
    from modelgate.monitor import check

    control = _control(args)
    with control.acting("operator"):
        s3 = control.client("s3")
        try:
            body = s3.get_object(Bucket=control.bucket, Key=check.latest_key(args.service))["Body"].read()
        except s3.exceptions.NoSuchKey:
            raise ModelgateError(f"{args.service} has no drift verdict yet (its scheduled drift check has not run, "
                                 "or its monitoring policy has the drift check off)") from None
    verdict = json.loads(body)
    if args.json:
        print(json.dumps(verdict, indent=2))
        return 0
    print(one_line(f"{verdict['service']} version {verdict['version']} (release {verdict['release_id']}): "
                   f"{verdict['verdict']} over {verdict['records']} records, "
                   f"{verdict['window_start']} .. {verdict['window_end']}"))
    for c in verdict["checks"]:
        print(one_line(f"  {c['result']:12} {c['feature']:20} {c['reason']}"))
    print(one_line(verdict["summary"]))
    print(f"report: s3://{control.bucket}/{verdict['report_key']}")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from modelgate_harness.control import put_dataset

    version = put_dataset(_control(args), args.service, Path(args.file))
    print(f"dataset of {args.service} uploaded (object version {version})")
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    """The result on stdout; the function's log lines (START ... REPORT) on stderr, as `sam local invoke`."""
    from modelgate_emulator import run_function

    parameters = dict(p.split("=", 1) for p in args.parameter)
    outcome = run_function(
        _logical_id(Path(args.template), args.function),
        Path(args.event),
        template_path=Path(args.template),
        parameters=parameters,
    )
    for line in outcome.log_lines:
        print(line, file=sys.stderr)
    print(json.dumps(outcome.payload, indent=2, default=str))
    return 0 if outcome.ok else 1


def cmd_logs(args: argparse.Namespace) -> int:
    """A function's recent log lines from its log group (/aws/lambda/<function name>)."""
    import time
    from datetime import UTC, datetime

    from modelgate_emulator.logs import read_events

    control = _control(args)
    name = _physical_function_name(args, control)
    since = int((time.time() - args.minutes * 60) * 1000)
    with control.acting("operator"):
        events = read_events(control.client("logs"), name, start_time_ms=since, limit=args.limit)
    if not events:
        print(f"modelgate: no log lines of {name} in the last {args.minutes:g} minutes", file=sys.stderr)
        return 1
    for event in events:
        stamp = datetime.fromtimestamp(event["timestamp"] / 1000, UTC).isoformat(timespec="milliseconds")
        print(f"{stamp} {event['message']}")
    return 0


def _physical_function_name(args: argparse.Namespace, control) -> str:
    """FUNCTION as a logical id / functions/<name> of the template -> the deployed name; else as given."""
    template = Path(args.template)
    logical = _template_function(template, args.function) if template.is_file() else None
    if logical is None:
        return args.function
    if args.local:
        from modelgate_harness.server import local_stack_state

        names = local_stack_state(Path(args.local_state), args.stack).get("functions") or {}
        if logical not in names:
            raise SystemExit(f"modelgate: the local runtime's state file has no function {logical}: restart "
                             "`modelgate local up`")
        return str(names[logical])
    resource = control.client("cloudformation").describe_stack_resource(
        StackName=control.stack_name, LogicalResourceId=logical
    )
    return str(resource["StackResourceDetail"]["PhysicalResourceId"])


def _template_function(template: Path, function: str) -> str | None:
    """A function's logical id as given, or the one whose CodeUri is functions/<name> (or <name>)."""
    from cfn_flip import load_yaml

    resources = load_yaml(template.read_text())["Resources"]
    functions = {k: r for k, r in resources.items() if r.get("Type") == "AWS::Serverless::Function"}
    if function in functions:
        return function
    wanted = function.rstrip("/").split("/")[-1]
    for logical_id, resource in functions.items():
        code = str(resource.get("Properties", {}).get("CodeUri", "")).rstrip("/").split("/")[-1]
        if code == wanted:
            return logical_id
    return None


def _logical_id(template: Path, function: str) -> str:
    """A logical id as given, or the one whose CodeUri is functions/<name> (or <name>)."""
    from cfn_flip import load_yaml

    resources = load_yaml(template.read_text())["Resources"]
    if function in resources:
        return function
    found = _template_function(template, function)
    if found is not None:
        return found
    names = sorted(k for k, r in resources.items() if r["Type"] == "AWS::Serverless::Function")
    raise SystemExit(f"modelgate: no function {function!r} in {template}; functions: {', '.join(names)}")


def _template(path: str) -> Path:
    """The template a local command deploys; missing (e.g. run outside the project folder): one clear line."""
    template = Path(path)
    if not template.is_file():
        raise FileNotFoundError(2, "no such file", str(template))
    return template


def project_code_only(template: Path) -> None:
    """Refuse a template whose local code (CodeUri, ContentUri, DefinitionUri, Globals) points
    outside the template's folder: `modelgate local up` runs the project's code and no other
    (a template from elsewhere could otherwise run any folder on this machine as a function)."""
    from modelgate_emulator.template import load_template

    root = template.resolve().parent
    loaded = load_template(template)
    uris = {"Globals.Function.CodeUri": ((loaded.get("Globals") or {}).get("Function") or {}).get("CodeUri")}
    for logical_id, resource in (loaded.get("Resources") or {}).items():
        properties = (resource or {}).get("Properties") or {}
        for prop in ("CodeUri", "ContentUri", "DefinitionUri", "Code", "Content"):
            uris[f"{logical_id}.{prop}"] = properties.get(prop)
    for where, value in uris.items():
        if not isinstance(value, str) or value.startswith("s3://"):
            continue
        path = (root / value).resolve()
        if path != root and root not in path.parents:
            raise TemplateOutsideProject(
                f"{template}: {where} is {one_line(value, 200)}, outside the project folder {root}: "
                "`modelgate local up` runs only the project's own code"
            )


class TemplateOutsideProject(ModelgateError):
    """The template's code lies outside its project folder."""


def _template_parameter(text: str) -> tuple[str, str]:
    """KEY=VALUE, a template parameter override."""
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9]+", key):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE with KEY a template parameter name "
                                         "(e.g. Stage=staging)")
    return key, value


def declared_parameters(template: Path, given: dict[str, str]) -> None:
    """Refuse a parameter the template does not declare, as CloudFormation refuses it at
    CreateStack ("Parameters: [X] do not exist in the template", a ValidationError; "Parameters",
    AWS CloudFormation User Guide, template anatomy): a typo must not leave the default in place."""
    from modelgate_emulator.template import load_template

    declared = set(load_template(template).get("Parameters") or {})
    unknown = sorted(set(given) - declared)
    if unknown:
        raise TemplateParameterUnknown(f"Parameters: {unknown} do not exist in {template} (it declares "
                                       f"{', '.join(sorted(declared))})")


class TemplateParameterUnknown(ModelgateError):
    """A --parameter the template does not declare."""


def cmd_local_up(args: argparse.Namespace) -> int:
    from modelgate_harness.server import DEFAULT_STACK, serve

    project_code_only(_template(args.template))
    declared_parameters(Path(args.template), dict(args.parameter))
    serve(Path(args.template), port=args.port, time_factor=args.time_factor, state_file=Path(args.state_file),
          traffic_rate=args.traffic, stack_name=args.up_stack or args.stack or DEFAULT_STACK,
          parameters=dict(args.parameter))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from modelgate_harness.demo import run_demo

    code = run_demo(time_factor=args.time_factor, template_path=Path(args.template), verbose=args.verbose)
    if not args.skip_stages:
        from modelgate_harness.stages import run_stages_demo

        failures = run_stages_demo(time_factor=args.time_factor, template_path=Path(args.template))
        if failures:
            print("\nSTAGES DEMO FAILED:\n  " + "\n  ".join(failures))
            code = 1
        else:
            print("\nStages demo OK: production took what staging promoted and refused the rest; an edited "
                  "ledger record failed verification.")
    if os.environ.get("MODELGATE_IAM_DIR"):  # `make iam-report`: keep the demo's authorisations
        from modelgate_emulator import iam, iam_report

        iam_report.write_session(
            Path(os.environ["MODELGATE_IAM_DIR"]), f"demo-{os.getpid()}", iam.collected(), template=Path(args.template)
        )
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelgate", description=__doc__)
    parser.add_argument("--stack", default=os.environ.get("MODELGATE_STACK") or None,
                        help=f"CloudFormation stack name (default: $MODELGATE_STACK or '{DEFAULT_AWS_STACK}'); "
                        "with --local, which of the state file's running stacks (default: its only one)")
    parser.add_argument("--region", default=None, help="AWS region (default: the credential chain's)")
    parser.add_argument("--profile", default=None, help="AWS profile")
    parser.add_argument("--local", action="store_true", default=bool(os.environ.get("MODELGATE_LOCAL")),
                        help="talk to a running `modelgate local up` instead of AWS (also: $MODELGATE_LOCAL)")
    parser.add_argument("--local-state", default=os.environ.get("MODELGATE_LOCAL") or ".modelgate-local.json",
                        metavar="STATE_FILE", help="the state file `modelgate local up` wrote (default: "
                        "$MODELGATE_LOCAL or .modelgate-local.json)")
    parser.add_argument("--as", dest="as_principal", choices=("ci", "approver", "operator"), default=None,
                        help="locally: run the command as this principal instead of its own (submit: ci, "
                        "approve/reject: approver, status/rollback/dataset: operator)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("submit", help="upload a release folder (prompt files, then the manifest); prints the release id")
    p.add_argument("directory", help="folder with model-config.json and the prompt files it names")
    p.add_argument("--commit", help="source commit (default: the manifest's)")
    p.add_argument("--branch", help="source branch (default: the manifest's)")
    p.add_argument("--author", help="who the upload is for, as CI authenticated them (default: $GITHUB_ACTOR on "
                   "GitHub Actions, else your own identity); four eyes keeps them from approving it")
    p.add_argument("--eval-summary", metavar="FILE", help="`modelgate eval --summary-json` of this folder: its "
                   "verdict and accuracy go in the upload's metadata (x-amz-meta-modelgate-eval-*)")
    p.add_argument("--attestation", metavar="FILE", help="the upstream stage's attestation of this artefact "
                   "(modelgate attestation RELEASE --out FILE against that stage), put beside it first; with the stage's "
                   "revocation of it when FILE's .revocation.json is there")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("verify", help="check a release's chain record and signed attestation (exit 1 if not verified)")
    p.add_argument("release")
    p.add_argument("--public-key", metavar="FILE", help="the stack's public key PEM (modelgate public-key); "
                   "default: read once from KMS")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("audit", help="export a service's trail for auditors, with its chain status")
    p.add_argument("service")
    p.add_argument("--since", type=_iso_moment, help="ISO date or time: records from then on")
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("attestation", help="a release's signed attestation (CI carries it to the next stage); with "
                       "--out, its revocation too (FILE's name .revocation.json) when the stage revoked it")
    p.add_argument("release")
    p.add_argument("--out", metavar="FILE")
    p.set_defaults(func=cmd_attestation)

    p = sub.add_parser("revoke", help="sign the revocation of a rolled-back release, so no downstream stage takes "
                       "it (modelgate rollback does it itself; operator)")
    p.add_argument("release")
    p.set_defaults(func=cmd_revoke)

    p = sub.add_parser("public-key", help="the stack's attestation signing key's public half (PEM)")
    p.add_argument("--out", metavar="FILE")
    p.set_defaults(func=cmd_public_key)

    p = sub.add_parser("trust", help="trust an upstream stage's attestation key in this stack (operator)")
    p.add_argument("stage", help="the upstream stage, as service policies name it (requires_stage)")
    p.add_argument("--public-key", required=True, metavar="FILE", help="its public key PEM (modelgate public-key)")
    p.add_argument("--replace", action="store_true", help="trust only this key (default: add it, for a rotation)")
    p.set_defaults(func=cmd_trust)

    p = sub.add_parser("revoke-signing-key", help="a signing key leaked: every approval link signed so far stops "
                       "working now (operator)")
    p.set_defaults(func=cmd_revoke_signing_key)

    p = sub.add_parser("status", help="one release in detail, a service's timeline (releases, re-evaluations, "
                       "actions, drift verdicts), or the latest releases")
    p.add_argument("release", nargs="?", help="a release id, or a service name for its timeline")
    p.add_argument("--service")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                   help="a release id whose record may not be written yet (just submitted): ask again until it is, "
                   "for at most SECONDS (default 0: ask once)")
    p.set_defaults(func=cmd_status)

    for name in ("approve", "reject"):
        p = sub.add_parser(name, help=f"{name} a release waiting for approval (your IAM identity is recorded)")
        p.add_argument("release")
        p.add_argument("--comment", default="")
        p.set_defaults(func=cmd_decide)

    p = sub.add_parser("eval", help="evaluate a release folder locally against a dataset (and the live folder), before pushing")
    p.add_argument("directory", help="release folder with model-config.json")
    p.add_argument("--dataset", required=True, help="JSONL dataset")
    p.add_argument("--live", help="the live release's folder, evaluated on the same cases")
    p.add_argument("--policy", help="gate policy JSON (default: the built-in default policy)")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--scoring", choices=["local", "bedrock"], help="models for semantic / llm_judge scorers")
    p.add_argument("--html", help="write the HTML report here")
    p.add_argument("--plan", action="store_true",
                   help="print the gate's power on this dataset (smallest detectable drop, cases needed) and the "
                        "evaluation's estimated cost, and exit: no calls")
    p.add_argument("--live-accuracy", type=_fraction, help="with --plan: live's accuracy (default: unknown, worst case)")
    p.add_argument("--discordance", type=_fraction,
                   help="with --plan: share of cases the sides answer differently (default: independent errors)")
    p.add_argument("--summary-json", metavar="FILE", help="write the verdict and numbers as JSON (for `submit "
                   "--eval-summary`)")
    p.add_argument("--summary-markdown", metavar="FILE", help="write a pull request comment body (Markdown)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("rollback", help="return a service to its last known good version now (no gates; alarms don't block it)")
    p.add_argument("service")
    p.add_argument("--comment", default="")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("drift", help="a service's latest drift verdict (the scheduled check) and its report")
    p.add_argument("service")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_drift)

    p = sub.add_parser("dataset", help="upload a service's evaluation dataset (JSONL)")
    p.add_argument("service")
    p.add_argument("file")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("invoke", help="run one function's handler on the local runtime (Docker-free `sam local invoke`)")
    p.add_argument("function", help="logical id in template.yaml (e.g. ValidateFunction) or functions/<name>")
    p.add_argument("-e", "--event", required=True, help="event JSON file")
    p.add_argument("-t", "--template", default="template.yaml")
    p.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                   help="template parameter override (repeatable)")
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser("logs", help="a function's recent log lines (its CloudWatch log group, on AWS or `local up`)")
    p.add_argument("function", help="logical id in template.yaml, functions/<name>, or a deployed function name")
    p.add_argument("--minutes", type=float, default=60.0, help="how far back (default 60)")
    p.add_argument("--limit", type=int, default=200, help="at most this many lines, the latest (default 200)")
    p.add_argument("-t", "--template", default="template.yaml", help="to resolve logical ids (default template.yaml)")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("local", help="the embedded local AWS as a server for the other commands")
    local_sub = p.add_subparsers(dest="local_command", required=True)
    up = local_sub.add_parser("up", help="deploy template.yaml locally and serve it until Ctrl-C")
    up.add_argument("-t", "--template", default="template.yaml")
    up.add_argument("--port", type=int, default=4566)
    up.add_argument("--time-factor", type=float, default=0.01,
                    help="real seconds per nominal second for waits and bakes (default 0.01)")
    up.add_argument("--state-file", default=".modelgate-local.json",
                    help="where to name this stack for the CLI (shared by several `local up`, one per stack)")
    up.add_argument("--stack", dest="up_stack", default=None, metavar="NAME",
                    help="the stack's name (default: the global --stack, else modelgate-local); run one `local up` "
                    "per stack, each on its own --port, with the same --state-file")
    up.add_argument("--parameter", action="append", default=[], type=_template_parameter, metavar="KEY=VALUE",
                    help="template parameter override, repeatable (e.g. Stage=prod RequiresStage=staging)")
    up.add_argument("--traffic", type=float, default=0.0, metavar="RPS",
                    help="live traffic on the sample service's live alias (requests per second)")
    up.set_defaults(func=cmd_local_up)

    p = sub.add_parser("demo", help="four releases on the local runtime: promoted, promoted, gate failed, rolled back")
    p.add_argument("--time-factor", type=float, default=0.005,
                   help="real seconds per nominal second for waits and bakes (default 0.005)")
    p.add_argument("-t", "--template", default="template.yaml")
    p.add_argument("-v", "--verbose", action="store_true", help="show the functions' logs too")
    p.add_argument("--skip-stages", action="store_true",
                   help="skip the second part: one artefact from a staging stack to a production stack")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every failure the user can act on is one line on stderr and exit code 2 (no traceback)."""
    from botocore.exceptions import BotoCoreError, ClientError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ModelgateError as exc:
        print(f"modelgate: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
    except FileNotFoundError as exc:
        print(f"modelgate: {exc.filename or exc}: no such file or folder (run from the project folder, "
              "or name the path)", file=sys.stderr)
    except (ClientError, BotoCoreError, OSError, ValueError) as exc:  # ValueError: pydantic's too
        print(f"modelgate: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
    except Exception as exc:  # a bug, still one line (MODELGATE_DEBUG=1 shows the traceback)
        if os.environ.get("MODELGATE_DEBUG"):
            raise
        print(f"modelgate: unexpected {type(exc).__name__}: {_one_line(str(exc))} (MODELGATE_DEBUG=1 shows where)",
              file=sys.stderr)
    return 2


def _one_line(text: str) -> str:
    return one_line(" ".join(text.split()), 2000)


if __name__ == "__main__":
    sys.exit(main())
