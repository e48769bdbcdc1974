"""Bedrock batch inference records: the job's input JSONL, its output parsed back, its states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modelgate_harness.local_eval import load_release_folder

from modelgate.errors import EvaluationFailed
from modelgate.evaluation.batch import (
    BatchAnswer,
    batch_input,
    check_answers,
    check_batch_plan,
    job_state,
    latency_sample,
    parse_batch_output,
    record_id,
    uses_batch,
    with_sample_latency,
)
from modelgate.evaluation.comparison import CaseResult, build_report
from modelgate.evaluation.dataset import DatasetCase, parse_dataset
from modelgate.evaluation.gate import evaluate_gate
from modelgate.evaluation.runner import evaluate, score_answers
from modelgate.manifest import InferenceParameters
from modelgate.policy import EvaluationMode, ReleasePolicy
from modelgate.providers import LocalProvider

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-bot"
CASES = parse_dataset((EXAMPLE / "dataset.jsonl").read_text())


def converse_answer(model_input: dict, provider: LocalProvider, model_id: str) -> dict:
    """What a Converse-type batch job writes as modelOutput, answered by the local model."""
    completion = provider.converse(
        model_id=model_id,
        system=model_input["system"][0]["text"],
        user=model_input["messages"][0]["content"][0]["text"],
        parameters=InferenceParameters(max_tokens=model_input["inferenceConfig"]["maxTokens"]),
    )
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": completion.text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": completion.input_tokens, "outputTokens": completion.output_tokens},
    }


def test_records_are_converse_bodies_of_the_release_prompts_rendered_per_case() -> None:
    release = load_release_folder(EXAMPLE / "v2")
    built = batch_input(release, CASES)
    lines = [json.loads(line) for line in built.jsonl.splitlines()]
    assert built.records == len(lines) == 40 and not built.unsendable
    first = lines[0]
    assert first["recordId"] == "C0000000000" and first["recordId"].isalnum() and len(first["recordId"]) == 11
    body = first["modelInput"]
    assert body["system"] == [{"text": release.system.render(CASES[0].inputs)}]
    assert body["messages"] == [{"role": "user", "content": [{"text": release.user.render(CASES[0].inputs)}]}]
    assert body["inferenceConfig"] == {"maxTokens": release.manifest.parameters.max_tokens,
                                       "temperature": release.manifest.parameters.temperature}


def test_a_case_missing_a_prompt_variable_is_not_sent_and_says_why() -> None:
    release = load_release_folder(EXAMPLE / "v4")  # its prompt needs a variable traffic doesn't carry
    needed = sorted(release.system.variables | release.user.variables)
    bare = DatasetCase(id="bare", inputs={"unrelated": "x"}, expected="x")
    built = batch_input(release, [*CASES[:2], bare])
    assert built.records == 2
    assert "PromptVariableMissing" in built.unsendable["bare"] and needed[0] in built.unsendable["bare"]


def test_the_output_is_joined_back_by_record_id_whatever_its_order() -> None:
    # Given v2's job answered by the local model, its lines written in reverse order
    release = load_release_folder(EXAMPLE / "v2")
    provider = LocalProvider(base_ms=0, per_output_token_ms=0)
    model_id = release.manifest.model.model_id
    out = []
    for line in batch_input(release, CASES).jsonl.splitlines():
        record = json.loads(line)
        record["modelOutput"] = converse_answer(record["modelInput"], provider, model_id)
        out.append(json.dumps(record))
    answers = parse_batch_output(reversed(out), CASES)
    # Then every case has the answer the local model gives on demand, in the cases' order
    assert [a.case_id for a in answers] == [c.id for c in CASES]
    for case, answer in zip(CASES, answers, strict=True):
        expected = provider.converse(model_id=model_id, system=release.system.render(case.inputs),
                                     user=release.user.render(case.inputs), parameters=release.manifest.parameters)
        assert (answer.output, answer.input_tokens, answer.output_tokens, answer.error) == (
            expected.text, expected.input_tokens, expected.output_tokens, None)


def test_error_lines_and_missing_records_are_errors_of_their_case() -> None:
    cases = CASES[:3]
    lines = [
        json.dumps({"recordId": record_id(0), "modelInput": {}, "error": {"errorCode": 400, "errorMessage": "bad input"}}),
        json.dumps({"recordId": record_id(1), "modelInput": {}, "modelOutput": {"unexpected": True}}),
    ]
    answers = parse_batch_output(lines, cases)
    assert answers[0].output is None and answers[0].error == "batch record error 400: bad input"
    assert answers[1].output is None and "not a Converse response" in (answers[1].error or "")
    assert answers[2].output is None and "no batch output" in (answers[2].error or "")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 1 is not JSON"),
        (json.dumps({"recordId": "C9999999999", "modelOutput": {}}), "not one of this input's"),
        (json.dumps({"modelOutput": {}}), "not one of this input's"),
    ],
)
def test_output_that_is_not_this_inputs_fails_the_evaluation(line: str, message: str) -> None:
    with pytest.raises(EvaluationFailed, match=message):
        parse_batch_output([line], CASES[:2])


def test_a_repeated_record_fails_the_evaluation() -> None:
    line = json.dumps({"recordId": record_id(0), "error": {"errorCode": 500, "errorMessage": "x"}})
    with pytest.raises(EvaluationFailed, match="repeats record"):
        parse_batch_output([line, line], CASES[:2])


@pytest.mark.parametrize(
    ("status", "state"),
    [("Submitted", "running"), ("Validating", "running"), ("Scheduled", "running"), ("InProgress", "running"),
     ("Stopping", "running"), ("Completed", "done"), ("PartiallyCompleted", "done"), ("Failed", "failed"),
     ("Stopped", "failed"), ("Expired", "failed")],
)
def test_every_documented_job_status_has_a_meaning(status: str, state: str) -> None:
    assert job_state(status) == state


def test_an_undocumented_status_is_refused_by_name() -> None:
    with pytest.raises(EvaluationFailed, match="'Paused' is not one Bedrock documents"):
        job_state("Paused")


def test_the_policy_chooses_batch_explicitly_or_above_a_case_count() -> None:
    assert not uses_batch(ReleasePolicy().evaluation, 10**6)  # on demand unless asked
    assert uses_batch(EvaluationMode(mode="batch"), 1)
    auto = EvaluationMode(mode="auto", batch_above_cases=500)
    assert not uses_batch(auto, 499) and uses_batch(auto, 500)
    with pytest.raises(ValueError, match="mode"):
        ReleasePolicy.model_validate({"evaluation": {"mode": "overnight"}})


def test_the_latency_sample_is_reproducible_per_release_and_in_dataset_order() -> None:
    a = latency_sample(CASES, 10, seed="support-bot-abc")
    assert a == latency_sample(CASES, 10, seed="support-bot-abc")
    assert len(a) == 10 and [CASES.index(c) for c in a] == sorted(CASES.index(c) for c in a)
    assert a != latency_sample(CASES, 10, seed="support-bot-def")
    assert latency_sample(CASES, 500, seed="x") == CASES
    with pytest.raises(ValueError, match="sample size"):
        latency_sample(CASES, 0, seed="x")


def test_auto_stays_on_demand_under_the_accounts_minimum_records_and_batch_is_refused_there() -> None:
    auto = EvaluationMode(mode="auto", batch_above_cases=50, min_batch_records=100)
    assert not uses_batch(auto, 99) and uses_batch(auto, 100)
    policy = ReleasePolicy(evaluation=EvaluationMode(mode="batch", min_batch_records=100))
    with pytest.raises(EvaluationFailed, match="99 record.*under the minimum of 100 per batch inference job"):
        check_batch_plan(policy, 99)
    check_batch_plan(policy, 100)
    with pytest.raises(EvaluationFailed, match="repeats 3"):
        check_batch_plan(policy.model_copy(update={"repeats": 3}), 100)


def answer(case_id: str, **kw: object) -> BatchAnswer:
    return BatchAnswer(case_id, kw.pop("output", None), **kw)  # type: ignore[arg-type]


def test_model_refusals_stay_case_errors_but_unanswered_or_service_failed_records_fail_the_evaluation() -> None:
    # A 4xx error line and an unsent case are the side's errors on their cases: no exception
    check_answers("candidate", [answer("a", output="x"), answer("b", error="bad", error_code=400),
                                answer("c", error="none", missing=True)], {"c": "PromptVariableMissing: locale"})
    # A record the job never answered (PartiallyCompleted) is no evidence
    with pytest.raises(EvaluationFailed, match="candidate answered 1 of 2 cases: 1 record.*unanswered.*'b'"):
        check_answers("candidate", [answer("a", output="x"), answer("b", error="none", missing=True)], {})
    # Nor is one Bedrock failed on its side (throttled, 5xx)
    with pytest.raises(EvaluationFailed, match="live answered 1 of 2 cases: 1 record.*Bedrock's side.*'b'"):
        check_answers("live", [answer("a", output="x"), answer("b", error="batch record error 503: x", error_code=503)],
                      {})


def test_scoring_batch_answers_is_scoring_the_same_outputs_on_demand() -> None:
    # Given each case's answer per side (one refused, as an error)
    outputs = {c.id: (c.expected if isinstance(c.expected, str) else "no idea") for c in CASES}

    def response(case: DatasetCase, side: str) -> dict:
        if side == "live" and case.id == CASES[0].id:
            raise RuntimeError("model refused")
        return {"output": outputs[case.id] + (" (live)" if side == "live" else ""),
                "usage": {"input_tokens": 3, "output_tokens": 4}, "cost_usd": 0.001}

    def replay(case: DatasetCase, side: str):
        return lambda: response(case, side)

    by_inputs = {json.dumps(c.inputs, sort_keys=True): c for c in CASES}
    assert len(by_inputs) == len(CASES)  # distinct inputs: an on-demand invoker can tell cases apart
    scored = score_answers(CASES, {side: {c.id: replay(c, side) for c in CASES} for side in ("candidate", "live")},
                           concurrency=3)
    on_demand = evaluate(
        CASES, {side: (lambda inputs, side=side: response(by_inputs[json.dumps(inputs, sort_keys=True)], side))
                for side in ("candidate", "live")}, concurrency=3)
    # Then the scores, errors and the gate's verdict are the same
    key = lambda r: (r.side, r.case_id)
    assert [(r.side, r.case_id, r.score, r.error) for r in sorted(scored.results, key=key)] == [
        (r.side, r.case_id, r.score, r.error) for r in sorted(on_demand.results, key=key)]
    assert evaluate_gate(scored, ReleasePolicy()) == evaluate_gate(on_demand, ReleasePolicy())
    with pytest.raises(EvaluationFailed, match="side 'live' has no answer for 1 case"):
        score_answers(CASES[:2], {"candidate": {c.id: replay(c, "candidate") for c in CASES[:2]},
                                  "live": {CASES[0].id: replay(CASES[0], "live")}}, concurrency=1)


def result(side: str, case_id: str, latency_ms: float, error: str | None = None) -> CaseResult:
    return CaseResult(side=side, case_id=case_id, score=0.0 if error else 1.0, error=error, latency_ms=latency_ms)


def test_latency_comes_from_the_on_demand_sample_and_everything_else_from_the_batch() -> None:
    ids = [f"c{i}" for i in range(20)]
    batch = build_report([result(s, i, 0.01) for s in ("candidate", "live") for i in ids])
    sample = build_report([result("candidate", i, 200.0 + n) for n, i in enumerate(ids[:5])]
                          + [result("live", i, 100.0 + n) for n, i in enumerate(ids[:5])])
    merged = with_sample_latency(batch, sample)
    # Each side's percentiles and the paired p95 comparison are the sample's
    for side in ("candidate", "live"):
        for field in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
            assert getattr(merged.sides[side], field) == getattr(sample.sides[side], field)
    assert merged.comparison.latency_p95_ms == sample.comparison.latency_p95_ms
    assert merged.comparison.latency_p95_ms.delta == pytest.approx(100.0)
    # over 5 timed calls per side (what a relative latency alarm may count as evidence)
    assert merged.sides["candidate"].latency_samples == 5 and batch.sides["candidate"].latency_samples is None
    # Accuracy, counts and the paired test stay the batch's (20 cases, not the sample's 5)
    assert merged.sides["candidate"].n == 20 and merged.comparison.n_pairs == 20
    assert merged.comparison.accuracy == batch.comparison.accuracy
    # A sampled case's result carries its call's latency; one not sampled, none timed
    timed = {(r.side, r.case_id): r.latency_ms for r in merged.results}
    assert timed[("candidate", "c0")] == 200.0 and timed[("live", "c4")] == 104.0 and timed[("candidate", "c9")] == 0.0
