"""Bedrock batch inference for large evaluations: the job's JSONL in and out, and its states.

Shapes follow the Amazon Bedrock User Guide:

* input ("Format and upload your batch inference data",
  https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-data.html): one JSON
  object per line, ``{"recordId": "<alphanumeric>", "modelInput": {...}}``; with the job's
  ``modelInvocationType`` ``Converse``, ``modelInput`` is a Converse request body (one request
  shape for every model family, as ``providers.BedrockProvider`` sends on demand). The model
  is the job's, not the record's.
* output ("View the results of a batch inference job",
  https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-results.html): one
  ``.jsonl.out`` file per input file under ``<output S3 URI>/<job id>/``, each line
  ``{"recordId", "modelInput", "modelOutput"}`` (a Converse response for Converse jobs), or an
  ``error`` object instead of ``modelOutput``; the order of lines is not guaranteed, so records
  are joined back to cases by ``recordId``.
* states (GetModelInvocationJob ``status``, ListModelInvocationJobs "statusEquals" in the Bedrock
  API Reference): Submitted, Validating, Scheduled and InProgress are on the way; Stopping is
  on the way to Stopped; Completed and PartiallyCompleted ("not all of your records could be
  processed in time") have output to read; Failed, Stopped and Expired ("scheduled but didn't
  begin before the set timeout duration") end the job without a full result.

A case the batch can't answer (no output line, an ``error`` line) is an error of that side on
that case, never a wrong answer and never silently dropped.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

from modelgate.errors import EvaluationFailed, PromptVariableMissing
from modelgate.policy import EvaluationMode, ReleasePolicy

if TYPE_CHECKING:  # SubmitBatch's and ReduceBatch's (not PlanEvaluation's nor PollBatch's)
    from modelgate.evaluation.comparison import EvaluationReport
    from modelgate.evaluation.dataset import DatasetCase
    from modelgate.inference import LoadedRelease

JobState = Literal["running", "done", "failed"]

RUNNING_STATUSES = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
DONE_STATUSES = frozenset({"Completed", "PartiallyCompleted"})
FAILED_STATUSES = frozenset({"Failed", "Stopped", "Expired"})


def job_state(status: str) -> JobState:
    """What a GetModelInvocationJob status means for the evaluation waiting on it."""
    if status in RUNNING_STATUSES:
        return "running"
    if status in DONE_STATUSES:
        return "done"
    if status in FAILED_STATUSES:
        return "failed"
    known = ", ".join(sorted(RUNNING_STATUSES | DONE_STATUSES | FAILED_STATUSES))
    raise EvaluationFailed(f"batch inference job status {status[:64]!r} is not one Bedrock documents (known: {known})")


def uses_batch(mode: EvaluationMode, n_cases: int) -> bool:
    """Whether an evaluation of ``n_cases`` runs as a batch job under the policy's ``evaluation``.

    ``auto`` needs ``batch_above_cases`` cases and the account's minimum records per job;
    ``batch`` under that minimum is refused by ``check_batch_size`` (Bedrock would fail the job).
    """
    if mode.mode == "batch":
        return True
    return mode.mode == "auto" and n_cases >= max(mode.batch_above_cases, mode.min_batch_records)


def check_batch_plan(policy: ReleasePolicy, n_cases: int) -> None:
    """What PlanEvaluation refuses before any job exists (``EvaluationFailed``, by name): fewer
    cases than the account's minimum records per job, and ``repeats`` above 1 (a job answers each
    record once; repeated records would need ids of their own, not built: evaluate on demand)."""
    check_batch_size(policy.evaluation, n_cases, side="the dataset")
    if policy.repeats != 1:
        raise EvaluationFailed(
            f"batch evaluation runs each case once; the policy asks for repeats {policy.repeats}: "
            "evaluate on demand (evaluation.mode 'on_demand') to repeat cases"
        )


def check_batch_size(mode: EvaluationMode, records: int, *, side: str) -> None:
    """``EvaluationFailed`` when ``side``'s job would have fewer records than the account's
    "Minimum number of records per batch inference job" quota (``min_batch_records``):
    Bedrock fails such a job at validation, so it is never created."""
    if records < mode.min_batch_records:
        raise EvaluationFailed(
            f"batch evaluation of {side}: {records} record(s), under the minimum of {mode.min_batch_records} "
            "per batch inference job (policy evaluation.min_batch_records, the account's Bedrock quota "
            "'Minimum number of records per batch inference job'); evaluate on demand (evaluation.mode "
            "'on_demand' or 'auto') or add cases"
        )


def latency_sample(cases: Sequence[DatasetCase], size: int, *, seed: str) -> list[DatasetCase]:
    """The cases called on demand beside a batch job, for latency (a batch has none per call):
    ``size`` of them (all, if fewer), drawn with ``seed`` (the release id: the same release
    samples the same cases), in dataset order."""
    if size < 1:
        raise ValueError(f"latency sample size must be >= 1, got {size}")
    if size >= len(cases):
        return list(cases)
    picked = sorted(random.Random(seed).sample(range(len(cases)), size))
    return [cases[i] for i in picked]


def record_id(index: int) -> str:
    """The record id of the case at ``index``: 11 alphanumeric characters (``C`` + 10 digits)."""
    if not 0 <= index < 10**10:
        raise ValueError(f"case index {index} out of range for a record id")
    return f"C{index:010d}"


class BatchInput(NamedTuple):
    """One side's job input: the JSONL body, and the cases that could not be put in it (why)."""

    jsonl: str
    records: int
    unsendable: Mapping[str, str]  # case id -> reason (a prompt variable the case lacks)


def batch_input(release: LoadedRelease, cases: Sequence[DatasetCase]) -> BatchInput:
    """The Converse-type records of ``cases`` for ``release``: its prompts rendered per case, its
    inference parameters; the model is the job's (``release.manifest.model.model_id``)."""
    params = release.manifest.parameters
    config: dict[str, float | int] = {"maxTokens": params.max_tokens, "temperature": params.temperature}
    if params.top_p is not None:
        config["topP"] = params.top_p
    lines: list[str] = []
    unsendable: dict[str, str] = {}
    for index, case in enumerate(cases):
        try:
            system, user = release.system.render(case.inputs), release.user.render(case.inputs)
        except PromptVariableMissing as exc:
            unsendable[case.id] = f"{type(exc).__name__}: {exc}"
            continue
        body = {
            "system": [{"text": system}],
            "messages": [{"role": "user", "content": [{"text": user}]}],
            "inferenceConfig": config,
        }
        lines.append(json.dumps({"recordId": record_id(index), "modelInput": body}, separators=(",", ":")))
    return BatchInput("\n".join(lines) + ("\n" if lines else ""), len(lines), unsendable)


class BatchAnswer(NamedTuple):
    """One case's answer from the job's output (or why there is none)."""

    case_id: str
    output: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    error_code: int | None = None  # the error line's errorCode, when it has a number
    missing: bool = False  # no output line at all


# An error line with one of these codes is Bedrock's (throttled, service error), not the
# model's answer to the record: it says nothing of the release ("View the results of a batch
# inference job": error lines carry the errorCode of the failed invocation).
SERVICE_ERROR_CODES = frozenset({429, 500, 502, 503, 504})


def check_answers(side: str, answers: Sequence[BatchAnswer], unsendable: Mapping[str, str]) -> None:
    """``EvaluationFailed`` when ``side``'s output is not evidence about the release: a record the
    job sent but did not answer (a PartiallyCompleted job: "not all of your records could be
    processed in time"), or an error line Bedrock reports as its own (``SERVICE_ERROR_CODES``).
    A record the model refused (a 4xx error line) stays the side's error on that case, as a
    failed on-demand call is, and a case that could not be sent (``unsendable``) the same."""
    unanswered = [a.case_id for a in answers if a.missing and a.case_id not in unsendable]
    service = [a for a in answers if a.error_code in SERVICE_ERROR_CODES]
    problems = []
    if unanswered:
        problems.append(
            f"{len(unanswered)} record(s) unanswered (first: case {unanswered[0]!r}; a partially completed job)"
        )
    if service:
        problems.append(
            f"{len(service)} record(s) failed on Bedrock's side (first: case {service[0].case_id!r}: {service[0].error})"
        )
    if problems:
        raise EvaluationFailed(
            f"batch inference of {side} answered {len(answers) - len(unanswered) - len(service)} of "
            f"{len(answers)} cases: " + "; ".join(problems) + ". Its output is no evidence about the release: "
            "run the release again (a new job) or evaluate on demand"
        )


def _converse_text(model_output: Mapping[str, object]) -> tuple[str, int, int]:
    """Text and token usage of a Converse response (text blocks only, as on demand)."""
    try:
        blocks = model_output["output"]["message"]["content"]  # type: ignore[index]
        usage = model_output["usage"]
        text = "".join(b["text"] for b in blocks if isinstance(b, dict) and "text" in b)  # type: ignore[union-attr]
        return text, int(usage["inputTokens"]), int(usage["outputTokens"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"modelOutput is not a Converse response ({type(exc).__name__}: {exc})") from None


def parse_batch_output(lines: Iterable[str], cases: Sequence[DatasetCase]) -> list[BatchAnswer]:
    """Every case's answer from a job's ``.jsonl.out`` lines, in the cases' order.

    A line's ``recordId`` names its case (``record_id``); an ``error`` line, an unreadable
    ``modelOutput`` or a case with no line at all (PartiallyCompleted) is an error answer. A line
    that isn't JSON, names no case of this input, or repeats a case is the job's fault and fails
    the evaluation (``EvaluationFailed``): the output can't be trusted to be this input's.
    """
    by_id = {record_id(i): case for i, case in enumerate(cases)}
    answers: dict[str, BatchAnswer] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise EvaluationFailed(f"batch output line {number} is not JSON: {exc}") from None
        rid = line.get("recordId") if isinstance(line, dict) else None
        case = by_id.get(rid) if isinstance(rid, str) else None
        if case is None:
            raise EvaluationFailed(f"batch output line {number} names record {str(rid)[:40]!r}, not one of this input's")
        if case.id in answers:
            raise EvaluationFailed(f"batch output line {number} repeats record {rid} (case {case.id!r})")
        if "error" in line:
            error = line["error"]
            detail = (
                f"{error.get('errorCode', '?')}: {error.get('errorMessage', '')}" if isinstance(error, dict) else str(error)
            )
            code = error.get("errorCode") if isinstance(error, dict) else None
            answers[case.id] = BatchAnswer(
                case.id, None, error=f"batch record error {detail}"[:2000],
                error_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            )
            continue
        try:
            text, tokens_in, tokens_out = _converse_text(line.get("modelOutput"))
        except ValueError as exc:
            answers[case.id] = BatchAnswer(case.id, None, error=f"batch record {rid}: {exc}")
            continue
        answers[case.id] = BatchAnswer(case.id, text, tokens_in, tokens_out)
    return [
        answers.get(case.id)
        or BatchAnswer(case.id, None, error="no batch output for this case (job partially completed)", missing=True)
        for case in cases
    ]


def with_sample_latency(report: EvaluationReport, sample: EvaluationReport) -> EvaluationReport:
    """The batch report with its latency taken from the on-demand sample (a batch job measures
    no latency per record): each side's percentiles, the paired p95 comparison (over the sample's
    cases, with its own interval), and each result's ``latency_ms`` where its case was sampled
    (0.0 elsewhere: no call of its own was timed), and ``latency_samples``, the sample's timed
    calls per side (what a canary alarm relative to live's latency counts as evidence, not the
    batch's case count). Scores, errors and costs stay the batch's."""
    from modelgate.evaluation.comparison import DeltaEstimate  # loaded with ReduceBatch's report

    latency_fields = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
    sides = {
        name: metrics.model_copy(update={
            **{f: getattr(sample.sides[name], f) for f in latency_fields},
            "latency_samples": sample.sides[name].calls - sample.sides[name].errors,
        })
        if name in sample.sides else metrics.model_copy(update={**dict.fromkeys(latency_fields), "latency_samples": 0})
        for name, metrics in report.sides.items()
    }
    comparison = report.comparison
    if comparison is not None:
        measured = sample.comparison.latency_p95_ms if sample.comparison is not None else None
        comparison = comparison.model_copy(
            update={"latency_p95_ms": measured or DeltaEstimate(candidate=None, live=None, delta=None, ci95=None)}
        )
    timed = {(r.side, r.case_id): r.latency_ms for r in sample.results if r.error is None}
    results = [r.model_copy(update={"latency_ms": timed.get((r.side, r.case_id), 0.0)}) for r in report.results]
    return report.model_copy(update={"sides": sides, "comparison": comparison, "results": results})
