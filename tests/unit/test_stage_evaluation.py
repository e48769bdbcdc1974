"""Evaluation stage: plan the shards on a pinned dataset version, evaluate one shard
(candidate and live on the same cases), reduce the shards into one report, gate it."""

from __future__ import annotations

import io
import json

import pytest

from modelgate.adapters import s3 as s3_adapter
from modelgate.adapters.s3 import put_json
from modelgate.contract import EvalPlan, EvaluationSummary, Shard, ShardResult
from modelgate.errors import DatasetInvalid, EvaluationFailed, GateFailed
from modelgate.evaluation.comparison import CaseResult, EvaluationReport, build_report
from modelgate.pipeline.evaluation import evaluate_shard, gate, plan_evaluation, reduce_evaluation
from modelgate.policy import ReleasePolicy

DATASET = "datasets/support-bot/dataset.jsonl"


def dataset(n: int, *, expected: str = "Reset password") -> str:
    return "\n".join(
        json.dumps({"id": f"case-{i}", "inputs": {"question": f"question {i}"}, "expected": expected, "scorer": "contains"})
        for i in range(n)
    ) + "\n"


def put_dataset(world, text: str) -> str:
    return world.deps.s3.put_object(Bucket="artefacts", Key=DATASET, Body=text.encode())["VersionId"]


class ServiceVersions:
    """The service function as the evaluation invokes it: each version answers per a table
    (the rest of the Lambda API is moto's)."""

    def __init__(self, real, answers: dict[str, str]) -> None:
        self._real = real
        self.answers = answers
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name):
        return getattr(self._real, name)

    def invoke(self, *, FunctionName, Qualifier, Payload):
        inputs = json.loads(Payload)["inputs"]
        self.calls.append((Qualifier, inputs))
        body = {"output": self.answers[Qualifier], "usage": {"input_tokens": 10, "output_tokens": 5}}
        return {"StatusCode": 200, "ExecutedVersion": Qualifier, "Payload": io.BytesIO(json.dumps(body).encode())}


def planned(world, n_cases: int, *, live_configured: bool = True, shard_size: int = 500):
    """A release whose evaluation was planned on the dataset's current version."""
    version = put_dataset(world, dataset(n_cases))
    shards = [Shard(index=i, start=s, end=min(s + shard_size, n_cases)) for i, s in enumerate(range(0, n_cases, shard_size))]
    plan = EvalPlan(dataset_key=DATASET, dataset_version=version, n_cases=n_cases,
                    live_configured=live_configured, shards=shards)
    return world.context(live_version="1", candidate_version="2", eval_plan=plan,
                         policy=ReleasePolicy(eval_shard_size=shard_size))


def results(case_ids, *, candidate_score: float, live_score: float | None) -> list[CaseResult]:
    out = []
    for case_id in case_ids:
        out.append(CaseResult(side="candidate", case_id=case_id, score=candidate_score, latency_ms=40.0))
        if live_score is not None:
            out.append(CaseResult(side="live", case_id=case_id, score=live_score, latency_ms=40.0))
    return out


def put_shard(world, ctx, index: int, case_ids, **scores) -> ShardResult:
    key = f"reports/support-bot/{ctx.release_id}/shards/{index:05d}.json"
    body = [r.model_dump(mode="json") for r in results(case_ids, **scores)]
    return ShardResult(index=index, key=key, version=put_json(world.deps.s3, "artefacts", key, body), cases=len(case_ids))


def evaluated(world, *, candidate_score: float, live_score: float, n: int = 20):
    """A release whose evaluation report (candidate and live on n cases) is in S3."""
    ctx = world.context(live_version="1", candidate_version="2")
    report = build_report(results([f"case-{i}" for i in range(n)], candidate_score=candidate_score, live_score=live_score))
    key = f"reports/support-bot/{ctx.release_id}/evaluation.json"
    version = put_json(world.deps.s3, "artefacts", key, report.model_dump_json())
    summary = EvaluationSummary(**report.summary(), report_key=key, report_version=version, dataset_key=DATASET,
                                dataset_version="dv1", shards=1, baseline="live")
    return ctx.model_copy(update={"evaluation": summary})


def read_json(world, key: str, version: str | None = None):
    extra = {"VersionId": version} if version else {}
    return json.loads(world.deps.s3.get_object(Bucket="artefacts", Key=key, **extra)["Body"].read())


# ---------------------------------------------------------------------- plan_evaluation
def test_the_plan_pins_the_dataset_version_and_cuts_it_into_shards(world):
    # Given a 7-case dataset, shards of at most 3, and a live version that serves a release
    world.service_function()
    version = put_dataset(world, dataset(7))
    ctx = world.context(live_version="1", candidate_version="2", policy=ReleasePolicy(eval_shard_size=3))
    # When the evaluation is planned
    plan = plan_evaluation(world.deps, ctx).eval_plan
    # Then the dataset's current version is pinned and cut into [0,3) [3,6) [6,7)
    assert (plan.dataset_key, plan.dataset_version, plan.n_cases) == (DATASET, version, 7)
    assert [(s.index, s.start, s.end) for s in plan.shards] == [(0, 0, 3), (1, 3, 6), (2, 6, 7)]
    # And live is compared against because it serves a release
    assert plan.live_configured is True
    assert world.ledger.get(ctx.release_id)["status"] == "EvaluationPlanned"


def test_a_first_release_plans_without_a_live_baseline(world):
    # Given a service whose live version serves no release yet
    world.service_function(live_serves_a_release=False)
    put_dataset(world, dataset(3))
    # When the evaluation is planned / Then there is no live side to compare with
    plan = plan_evaluation(world.deps, world.context(live_version="1", candidate_version="2")).eval_plan
    assert plan.live_configured is False and len(plan.shards) == 1


def test_planning_without_a_dataset_names_where_it_should_be(world):
    # Given no dataset uploaded for the service / When planned / Then the error says where it was looked for
    world.service_function()
    with pytest.raises(DatasetInvalid, match=r"dataset of support-bot \(s3://artefacts/datasets/support-bot/dataset.jsonl\) can.t be read: NoSuchKey"):
        plan_evaluation(world.deps, world.context(live_version="1", candidate_version="2"))


def test_planning_refuses_a_malformed_dataset_naming_the_line(world):
    # Given a dataset whose third line isn't a case / When planned / Then line 3 is named
    world.service_function()
    put_dataset(world, dataset(2) + "{not json\n")
    with pytest.raises(DatasetInvalid, match="dataset line 3"):
        plan_evaluation(world.deps, world.context(live_version="1", candidate_version="2"))


# ---------------------------------------------------------------------- evaluate_shard
def test_a_shard_runs_its_cases_on_candidate_and_live_and_writes_per_case_results(world):
    # Given a plan of 7 cases in shards of 3, candidate answering right and live wrong
    ctx = planned(world, 7, shard_size=3)
    service = world.use("lambda", ServiceVersions(world.deps.lambda_, {"2": "Reset password here", "1": "no idea"}))
    # When the middle shard is evaluated
    result = evaluate_shard(world.deps, ctx, ctx.eval_plan.shards[1])
    # Then its 3 cases ran on both versions with the same inputs
    assert sorted(service.calls, key=str) == sorted(
        [(v, {"question": f"question {i}"}) for v in ("1", "2") for i in (3, 4, 5)], key=str)
    # And their per-case results are written where the shard result says, at that version
    assert (result.index, result.cases) == (1, 3)
    assert result.key == f"reports/support-bot/{ctx.release_id}/shards/00001.json"
    written = read_json(world, result.key, result.version)
    assert written["judge"] is None  # no llm_judge case
    assert sorted((r["side"], r["case_id"], r["score"]) for r in written["results"]) == sorted(
        [("candidate", f"case-{i}", 1.0) for i in (3, 4, 5)] + [("live", f"case-{i}", 0.0) for i in (3, 4, 5)])


def test_a_shard_reads_the_pinned_dataset_version(world):
    # Given a plan pinned to the dataset's first version, and a new dataset uploaded since
    ctx = planned(world, 3)
    put_dataset(world, dataset(3).replace("question", "changed"))
    service = world.use("lambda", ServiceVersions(world.deps.lambda_, {"2": "Reset password", "1": "Reset password"}))
    # When the shard is evaluated / Then the cases are the pinned version's
    evaluate_shard(world.deps, ctx, ctx.eval_plan.shards[0])
    assert {inputs["question"] for _, inputs in service.calls} == {"question 0", "question 1", "question 2"}


def test_without_a_live_baseline_only_the_candidate_is_called(world):
    # Given a first release (live serves nothing)
    ctx = planned(world, 2, live_configured=False)
    service = world.use("lambda", ServiceVersions(world.deps.lambda_, {"2": "Reset password"}))
    # When its shard is evaluated / Then only the candidate answered, and only its results are written
    result = evaluate_shard(world.deps, ctx, ctx.eval_plan.shards[0])
    assert {version for version, _ in service.calls} == {"2"}
    assert {r["side"] for r in read_json(world, result.key)["results"]} == {"candidate"}


# ---------------------------------------------------------------------- reduce_evaluation
def test_the_shards_are_merged_into_one_report(world):
    # Given both shards of a 5-case evaluation written
    ctx = planned(world, 5, shard_size=3)
    shards = [put_shard(world, ctx, 0, ["case-0", "case-1", "case-2"], candidate_score=1.0, live_score=1.0),
              put_shard(world, ctx, 1, ["case-3", "case-4"], candidate_score=1.0, live_score=0.0)]
    # When they are reduced
    out = reduce_evaluation(world.deps, ctx.model_copy(update={"eval_shards": shards}))
    # Then one report holds all 5 cases on both sides, and the state carries its summary only
    summary = out.evaluation
    assert (summary.n_cases, summary.shards, summary.baseline) == (5, 2, "live")
    assert summary.sides["candidate"]["accuracy"] == 1.0 and summary.sides["live"]["accuracy"] == pytest.approx(0.6)
    report = EvaluationReport.model_validate_json(
        world.deps.s3.get_object(Bucket="artefacts", Key=summary.report_key, VersionId=summary.report_version)["Body"].read())
    assert len(report.results) == 10
    assert out.eval_plan is None and out.eval_shards is None
    assert world.ledger.get(ctx.release_id)["status"] == "Evaluated"


def test_a_missing_shard_is_refused_by_name(world):
    # Given a shard result whose file isn't there
    ctx = planned(world, 5, shard_size=3)
    shards = [put_shard(world, ctx, 0, ["case-0", "case-1", "case-2"], candidate_score=1.0, live_score=1.0),
              ShardResult(index=1, key=f"reports/support-bot/{ctx.release_id}/shards/00001.json", cases=2)]
    # When reduced / Then the evaluation fails naming that shard, and no report is written
    with pytest.raises(EvaluationFailed, match="results of shard 1 .* can't be read: NoSuchKey"):
        reduce_evaluation(world.deps, ctx.model_copy(update={"eval_shards": shards}))
    assert world.ledger.get(ctx.release_id) is None


def test_shards_that_do_not_cover_the_dataset_are_refused(world):
    # Given a 5-case plan but shards that returned 3 cases only (one shard's result lost)
    ctx = planned(world, 5, shard_size=3)
    shards = [put_shard(world, ctx, 0, ["case-0", "case-1", "case-2"], candidate_score=1.0, live_score=1.0)]
    # When reduced / Then both counts are named
    with pytest.raises(EvaluationFailed, match="shards returned 3 cases, the dataset has 5"):
        reduce_evaluation(world.deps, ctx.model_copy(update={"eval_shards": shards}))


# ---------------------------------------------------------------------- gate
def test_a_candidate_as_good_as_live_passes_and_its_html_report_is_written(world):
    # Given an evaluation where candidate and live answer all 20 cases right
    ctx = evaluated(world, candidate_score=1.0, live_score=1.0)
    # When gated
    out = gate(world.deps, ctx)
    # Then it passes, every criterion passing or not applying
    assert out.gate.passed and {c.verdict for c in out.gate.criteria} <= {"pass", "not_applicable"}
    # And the HTML report is written next to the JSON one, and linked
    html_key = f"reports/support-bot/{ctx.release_id}/evaluation.html"
    assert out.evaluation.report_html_key == html_key
    page = world.deps.s3.get_object(Bucket="artefacts", Key=html_key)
    assert page["ContentType"].startswith("text/html") and b"<html" in page["Body"].read().lower()
    record = world.ledger.get(ctx.release_id)
    assert record["status"] == "GatePassed" and record["evaluation"]["report_html_key"] == html_key


def test_a_worse_candidate_fails_naming_the_criteria_and_the_ledger_says_gate_checked(world):
    # Given an evaluation where the candidate misses all 20 cases live answers right
    ctx = evaluated(world, candidate_score=0.0, live_score=1.0)
    # When gated / Then GateFailed names the accuracy drop with its numbers
    with pytest.raises(GateFailed, match=r"accuracy_drop: candidate 0\.00 vs live 1\.00") as failed:
        gate(world.deps, ctx)
    assert "min_cases" not in str(failed.value)  # only the failed criteria are named
    # And the ledger records the check (the outcome is RecordOutcome's to write) with the verdict
    record = world.ledger.get(ctx.release_id)
    assert record["status"] == "GateChecked"
    assert {c["name"]: c["verdict"] for c in record["gate"]["criteria"]}["accuracy_drop"] == "fail"
    # And the report approvers and engineers read is written all the same
    assert world.deps.s3.get_object(Bucket="artefacts", Key=f"reports/support-bot/{ctx.release_id}/evaluation.html")


def test_shards_judge_runs_merge_and_the_gate_records_the_judge_in_the_ledger(world):
    # Given two shards, each with one llm_judge case, graded by one judge under two rubrics,
    # 12 human-graded answers between them on which the judge agrees with people on half
    from modelgate.evaluation.judges import JudgeCheck, JudgeRun

    ctx = planned(world, 4, shard_size=2)
    checks = [JudgeCheck(case_id=f"case-{i // 6}", index=i % 6, human_grade=float(i % 2), judge_score=float(i % 4 < 2))
              for i in range(12)]
    shards = []
    for index, (ids, rubric) in enumerate(((["case-0", "case-1"], "a" * 64), (["case-2", "case-3"], "b" * 64))):
        key = f"reports/support-bot/{ctx.release_id}/shards/{index:05d}.json"
        rows = [r.model_copy(update={"scorer": "llm_judge" if r.case_id == ids[0] else "contains"})
                for r in results(ids, candidate_score=1.0, live_score=1.0)]
        run = JudgeRun(model_id="anthropic.claude-judge", rubric_sha256=[rubric], checks=checks[6 * index:6 * index + 6])
        body = {"results": [r.model_dump(mode="json") for r in rows], "judge": run.model_dump(mode="json")}
        shards.append(ShardResult(index=index, key=key, version=put_json(world.deps.s3, "artefacts", key, body), cases=2))
    # When reduced and gated
    out = reduce_evaluation(world.deps, ctx.model_copy(update={"eval_shards": shards}))
    gated = gate(world.deps, out.model_copy(update={"policy": ReleasePolicy(min_cases=2)}))
    # Then the verdict names the judge, both rubrics' digests, and that it did not gate (kappa 0 < 0.6)
    judge = gated.gate.judge
    assert (judge.model_id, judge.rubric_sha256, judge.graded) == ("anthropic.claude-judge", ["a" * 64, "b" * 64], 12)
    assert judge.kappa == pytest.approx(0.0) and not judge.gating
    # And the ledger holds it with the verdict
    record = world.ledger.get(ctx.release_id)
    assert record["gate"]["judge"]["model_id"] == "anthropic.claude-judge"
    assert record["gate"]["judge"]["gating"] is False


# ---------------------------------------------------------------------- size caps (HeadObject first)
class CountingS3:
    """The S3 client, counting the GetObject calls (an oversize object must not be read at all)."""

    def __init__(self, real) -> None:
        self._real = real
        self.gets = 0

    def __getattr__(self, name):
        return getattr(self._real, name)

    def get_object(self, **kwargs):
        self.gets += 1
        return self._real.get_object(**kwargs)


def test_an_oversize_dataset_is_refused_by_its_size_before_a_byte_is_read(world, monkeypatch):
    # Given a dataset bigger than the cap (the cap made small: the check is the same at 32 MiB)
    world.service_function()
    text = dataset(7)
    put_dataset(world, text)
    monkeypatch.setattr(s3_adapter, "MAX_DATASET_BYTES", len(text) - 1)
    s3 = world.use("s3", CountingS3(world.deps.s3))
    ctx = world.context(live_version="1", candidate_version="2")
    # When the evaluation is planned / Then the dataset is refused naming its size and the cap, unread
    with pytest.raises(DatasetInvalid, match=rf"dataset of support-bot \(s3://artefacts/{DATASET} version \S+\) is "
                                             rf"{len(text):,} bytes; at most {len(text) - 1:,} are read"):
        plan_evaluation(world.deps, ctx)
    assert s3.gets == 0 and world.ledger.get(ctx.release_id) is None
    # And at the cap exactly it is read
    monkeypatch.setattr(s3_adapter, "MAX_DATASET_BYTES", len(text))
    assert plan_evaluation(world.deps, ctx).eval_plan.n_cases == 7


def test_a_shard_refuses_a_pinned_dataset_version_over_the_cap(world, monkeypatch):
    ctx = planned(world, 4)
    monkeypatch.setattr(s3_adapter, "MAX_DATASET_BYTES", 10)
    s3 = world.use("s3", CountingS3(world.deps.s3))
    with pytest.raises(DatasetInvalid, match="bytes; at most 10 are read"):
        evaluate_shard(world.deps, ctx, ctx.eval_plan.shards[0])
    assert s3.gets == 0


def test_oversize_shard_results_and_reports_are_refused_unread(world, monkeypatch):
    # Given a written shard and a written report, both over a (small) results cap
    ctx = planned(world, 3)
    shards = [put_shard(world, ctx, 0, ["case-0", "case-1", "case-2"], candidate_score=1.0, live_score=1.0)]
    gated = evaluated(world, candidate_score=1.0, live_score=1.0)
    monkeypatch.setattr(s3_adapter, "MAX_RESULTS_BYTES", 100)
    s3 = world.use("s3", CountingS3(world.deps.s3))
    # When reduced or gated / Then each is refused naming what it is and its size
    with pytest.raises(EvaluationFailed, match=r"results of shard 0 \(s3://artefacts/reports/\S+ version \S+\) is [\d,]+ bytes; "
                                               r"at most 100 are read"):
        reduce_evaluation(world.deps, ctx.model_copy(update={"eval_shards": shards}))
    with pytest.raises(EvaluationFailed, match=r"evaluation report \(s3://artefacts/reports/\S+ version \S+\) is [\d,]+ "
                                               r"bytes; at most 100 are read"):
        gate(world.deps, gated)
    assert s3.gets == 0


def test_a_bigger_upload_between_the_size_check_and_the_read_is_refused_all_the_same(world):
    # Given a dataset of 3 cases, and a far bigger one uploaded right after its size was checked
    put_dataset(world, dataset(3))

    class NewerUploadAfterHead(CountingS3):
        def head_object(self, **kwargs):
            head = self._real.head_object(**kwargs)
            put_dataset(world, dataset(3000))
            return head

    s3 = NewerUploadAfterHead(world.deps.s3)
    # When the current dataset is read with a cap the first one meets / Then the read's own cap refuses
    # the newer one (at most cap + 1 bytes of it were read, never all of it)
    with pytest.raises(DatasetInvalid, match=r"is over [\d,]+ bytes \(replaced while it was read\)"):
        s3_adapter.read_current(s3, "artefacts", DATASET, error=DatasetInvalid, what="dataset",
                                max_bytes=len(dataset(3)))
    # and asked for a version, it reads that version whatever was uploaded since
    first = put_dataset(world, dataset(3))
    put_dataset(world, dataset(3000))
    body, version = s3_adapter.read_current(world.deps.s3, "artefacts", DATASET, first, error=DatasetInvalid,
                                            what="dataset", max_bytes=len(dataset(3)))
    assert (version, body.decode()) == (first, dataset(3))
