"""A dataset too large for one invocation is sharded by the state machine and reduced
into one report (Distributed Map locally on moto's interpreter, as on AWS)."""

from __future__ import annotations

import json

from modelgate.evaluation.comparison import EvaluationReport
from modelgate.evaluation.dataset import parse_dataset


def test_five_thousand_cases_are_sharded_and_reduced_into_one_report(pipeline, tmp_path):
    # Given the 40-case dataset replicated to 5,000 cases, in shards of 500
    base = [json.loads(line) for line in (pipeline.examples / "dataset.jsonl").read_text().splitlines() if line.strip()]
    cases = [dict(case, id=f"{case['id']}-{i}") for i in range(125) for case in base]
    assert len(cases) == 5000
    big = tmp_path / "big.jsonl"
    big.write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    from modelgate_harness.control import put_dataset

    put_dataset(pipeline.control, "support-bot", big)
    pipeline.set_policy(eval_shard_size=500, eval_concurrency=16, approval_timeout_seconds=60)

    # When a release is submitted (nobody approves it: it stops after the gate)
    run = pipeline.release("v1", decision=None)

    # Then the evaluation ran as 10 shards and was reduced into one report of all cases
    assert run.path[:7] == ["Validate", "AcquireLock", "PublishCandidate", "PlanEvaluation",
                            "Evaluate", "ReduceEvaluation", "Gate"]
    summary = run.record["evaluation"]
    assert summary["shards"] == 10 and summary["n_cases"] == 5000
    s3 = pipeline.control.client("s3")
    report = EvaluationReport.model_validate_json(
        s3.get_object(Bucket=pipeline.control.bucket, Key=summary["report_key"])["Body"].read()
    )
    assert len({r.case_id for r in report.results}) == 5000
    # And the merged numbers are those of the 40 distinct cases (each repeated 125 times)
    small = parse_dataset((pipeline.examples / "dataset.jsonl").read_text())
    passed = {r.case_id.rsplit("-", 1)[0] for r in report.results if r.score == 1.0}
    assert report.sides["candidate"].accuracy == len(passed) / len(small)
    failed = {r.case_id.rsplit("-", 1)[0] for r in report.results if r.score != 1.0}
    assert not passed & failed  # every replica of a case scored alike, whichever shard ran it
