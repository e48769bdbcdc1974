"""Scheduled re-evaluation of live: has the same version started answering worse?

A provider can change what a model id answers (a silent model update, a changed safety
layer, a new serving stack) with nothing in the release changing. The re-evaluation runs the
dataset the promoting evaluation used, at the object version it used, against the version
live serves now, and pairs each case's score now with its score in the evaluation that
promoted that version (``evaluation.comparison.compare``: exact McNemar on pass/fail scores,
the exact sign test otherwise). A regression (``policy.ReevaluationPolicy``) sets off the
policy's ``on_reevaluation_regression`` actions (``actions.act``).

It runs from the monitor function on an EventBridge Scheduler schedule per service
(template.yaml), and when a drift action asks for it. Nothing runs while a release of the
service is in flight (its lock is held, or the alias is weighted): live is moving.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from modelgate import clock
from modelgate.adapters import lambda_alias
from modelgate.adapters import s3 as artefacts
from modelgate.adapters.s3 import put_html, put_json
from modelgate.contract import EvaluationSummary
from modelgate.errors import DatasetInvalid, EvaluationFailed
from modelgate.evaluation.comparison import CANDIDATE, LIVE, Comparison, EvaluationReport, build_report
from modelgate.monitor.actions import act
from modelgate.monitor.journal import Journal
from modelgate.monitor.policy import ReevaluationPolicy
from modelgate.pipeline.deps import Deps
from modelgate.policy import managed_function_prefix
from modelgate.registry import get_service

Verdict = Literal["regression", "no_regression", "insufficient", "skipped"]
NOW, THEN = CANDIDATE, LIVE  # the comparison's sides: live now (candidate), as promoted (live)


def judge(comparison: Comparison | None, policy: ReevaluationPolicy) -> tuple[Verdict, str]:
    """The verdict on live now vs as promoted, and why, in words (pure)."""
    if comparison is None or comparison.n_pairs < policy.min_cases:
        n = 0 if comparison is None else comparison.n_pairs
        return "insufficient", f"{n} paired case(s), fewer than the {policy.min_cases} the policy needs"
    test = comparison.paired_test
    now, then = comparison.accuracy.candidate or 0.0, comparison.accuracy.live or 0.0
    drop = then - now
    numbers = (
        f"accuracy {then:.3f} at promotion, {now:.3f} now ({-drop:+.3f}); {test.method} over "
        f"{comparison.n_pairs} cases: {test.b} worse, {test.c} better, p = {test.p_value:.3g}"
    )
    if test.b > test.c and test.p_value < policy.significance_level and drop > policy.max_accuracy_drop:
        return "regression", (
            f"live answers worse than when it was promoted: {numbers} (significance level "
            f"{policy.significance_level:g}, allowed drop {policy.max_accuracy_drop:g})"
        )
    return "no_regression", f"no significant regression: {numbers}"


def reevaluate_live(deps: Deps, service: str, *, requested_by: str = "schedule") -> dict[str, Any]:
    """Re-evaluate the service's live version, record the verdict in the monitoring journal
    (kind ``reevaluation``), and act on a regression per the policy. Returns the journal entry."""
    from modelgate.evaluation.dataset import parse_dataset
    from modelgate.evaluation.model_scorers import scoring_models_for
    from modelgate.evaluation.runner import evaluate
    from modelgate.monitor.report import render_reevaluation

    config = get_service(
        deps.ssm, deps.settings.services_prefix, service, function_prefix=managed_function_prefix(deps.settings.stack_name)
    )
    journal = Journal(deps.ledger.table)
    fn, alias = config.function_name, config.alias
    version, weights = lambda_alias.alias_state(deps.lambda_, fn, alias)
    holder = deps.ledger.lock_holder(service)
    if holder or weights:
        why = f"release {holder} is in flight" if holder else f"{fn}:{alias} is weighted {weights}"
        return journal.append(service, "reevaluation", f"skipped: {why}; live is moving", verdict="skipped",
                              live_version=version, requested_by=requested_by)
    promoting = next(
        (r for r in deps.ledger.list_releases(service=service, limit=200)
         if r.get("status") == "Promoted" and str(r.get("candidate_version")) == version and r.get("evaluation")),
        None,
    )
    if promoting is None:
        return journal.append(
            service, "reevaluation",
            f"insufficient: version {version} serves no promoted release with an evaluation to compare with",
            verdict="insufficient", live_version=version, requested_by=requested_by,
        )
    promoted = EvaluationSummary.model_validate(promoting["evaluation"])
    bucket = deps.settings.artifact_bucket
    then = EvaluationReport.model_validate_json(
        deps.read_artifact(promoted.report_key, promoted.report_version, error=EvaluationFailed,
                           what=f"evaluation report of release {promoting['release_id']}",
                           max_bytes=artefacts.MAX_RESULTS_BYTES)
    )
    dataset = deps.read_artifact(promoted.dataset_key, promoted.dataset_version, error=DatasetInvalid,
                                 what=f"dataset of {service} as the promoting evaluation read it",
                                 max_bytes=artefacts.MAX_DATASET_BYTES)
    cases = parse_dataset(dataset.decode("utf-8"))
    policy = config.policy
    now = evaluate(
        cases,
        {NOW: partial(lambda_alias.invoke_version, deps.lambda_, fn, version)},
        concurrency=policy.eval_concurrency,
        rate_limit=policy.eval_rate_limit_rps,
        scoring_models=scoring_models_for(policy.scoring_models) if policy.scoring_models else None,
    )
    as_promoted = [r.model_copy(update={"side": THEN}) for r in then.results if r.side == CANDIDATE]
    report = build_report(now.results + as_promoted)
    verdict, why = judge(report.comparison, policy.monitoring.reevaluation)
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    key = f"reports/{service}/monitor/reevaluation-{stamp}-v{version}"
    put_json(deps.s3, bucket, f"{key}.json", report.model_dump_json())
    title = f"{service}: re-evaluation of live version {version} ({stamp})"
    put_html(deps.s3, bucket, f"{key}.html",
             render_reevaluation(report, verdict=verdict, why=why, title=title, release_id=promoting["release_id"]))
    summary = report.summary()
    entry = journal.append(
        service, "reevaluation", f"{verdict.replace('_', ' ')}: {why}",
        verdict=verdict, live_version=version, promoted_by=promoting["release_id"], requested_by=requested_by,
        paired_test=summary["paired_test"], sides={"now": summary["sides"].get(NOW), "at_promotion": summary["sides"].get(THEN)},
        report_key=f"{key}.json", report_html_key=f"{key}.html",
    )
    if verdict == "regression":
        entry["actions"] = act(deps, "reevaluation_regression", service, why, {
            "live_version": version, "promoted_by": promoting["release_id"], "paired_test": summary["paired_test"],
            "accuracy_now": summary["sides"][NOW]["accuracy"], "accuracy_at_promotion": summary["sides"][THEN]["accuracy"],
            "report": f"s3://{bucket}/{key}.html",
        })
    return entry
