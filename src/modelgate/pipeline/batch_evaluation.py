"""Evaluation by Bedrock batch inference: SubmitBatch, PollBatch, ReduceBatch.

PlanEvaluation picks the mode (``modelgate.evaluation.batch.uses_batch``); in batch mode the
state machine runs, instead of the shards' Distributed Map:

* **SubmitBatch**: a small sample of the cases runs on demand through the service function's
  versions, as the shards do: a batch measures no latency per call ("Process multiple prompts
  with batch inference", Amazon Bedrock User Guide,
  https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference.html). Then each side's
  release (the candidate's upload, live's pinned release) renders every case into a
  Converse-type JSONL record; the input goes to S3 and one CreateModelInvocationJob per side
  runs it as the stack's batch service role (a retried step gets the same jobs back: the
  request token is the release's, side's and dataset version's).
* **WaitForBatch / PollBatch**: a Wait state and GetModelInvocationJob, in a loop bounded by the
  jobs' own timeout (``timeoutDurationInHours``) plus an hour. Step Functions' optimized Bedrock
  integration has InvokeModel and CreateModelCustomizationJob(.sync) only, no batch inference job
  ("Invoke and customize Amazon Bedrock models with Step Functions", AWS Step Functions Developer
  Guide, https://docs.aws.amazon.com/step-functions/latest/dg/connect-bedrock.html), so the wait is
  ours. A job that ends Failed, Stopped or Expired fails the evaluation with Bedrock's message.
* **ReduceBatch**: reads each job's ``.jsonl.out``, joins lines to cases by ``recordId`` and
  scores them through the same runner as on-demand calls (``runner.score_answers``); the report's
  latency is the sample's (``batch.with_sample_latency``). Unanswered records (a partially
  completed job) or records Bedrock failed on its side fail the evaluation
  (``batch.check_answers``); a record the model refused is that side's error on that case.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from modelgate import clock
from modelgate.adapters import lambda_alias
from modelgate.adapters import s3 as artefacts
from modelgate.adapters.s3 import put_json
from modelgate.contract import BatchJob, BatchPlan, ReleaseContext, ShardResult
from modelgate.errors import DatasetInvalid, EvaluationFailed, ModelgateError
from modelgate.evaluation import CANDIDATE, LIVE
from modelgate.pipeline.deps import Deps, target
from modelgate.pipeline.evaluation import record_evaluation, report_key, side_releases
from modelgate.settings import BatchSubmitSettings

if TYPE_CHECKING:
    from modelgate.evaluation.batch import BatchAnswer

INPUT_PREFIX = "batch-inference/input/"  # the service role reads only under this prefix
OUTPUT_PREFIX = "batch-inference/output/"  # and writes only under this one (template.yaml)
MAX_BATCH_OUTPUT_BYTES = 256 * 1024 * 1024  # one side's .jsonl.out (it repeats every modelInput)
# Step Functions keeps at most 25,000 events per execution ("Step Functions service quotas",
# AWS Step Functions Developer Guide); each poll round adds about ten, so the wait between polls
# grows with the timeout to keep the loop's rounds under this many.
MAX_POLLS = 1_000


class BatchRecordFailed(ModelgateError):
    """A batch record the model did not answer (an error line, or a case that could not be sent)."""


def _job_name(ctx: ReleaseContext, side: str) -> str:
    # jobName: 1-63 characters, [a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63} (CreateModelInvocationJob).
    digest = hashlib.sha256(ctx.release_id.encode()).hexdigest()[:16]
    return f"modelgate-{digest}-{side}"


def _token(ctx: ReleaseContext, side: str) -> str:
    # clientRequestToken: a retried SubmitBatch (same release, same pinned dataset) gets the same job
    # back ("Ensuring idempotency", CreateModelInvocationJob) rather than a second one.
    assert ctx.eval_plan is not None
    return hashlib.sha256(f"{ctx.release_id}|{side}|{ctx.eval_plan.dataset_version}".encode()).hexdigest()


def _batch_dir(ctx: ReleaseContext) -> str:
    return report_key(ctx).rsplit("/", 1)[0] + "/batch"


def _cases(deps: Deps, ctx: ReleaseContext) -> list:
    from modelgate.evaluation.dataset import parse_dataset

    assert ctx.eval_plan is not None
    body = deps.read_artifact(
        ctx.eval_plan.dataset_key, ctx.eval_plan.dataset_version, error=DatasetInvalid,
        what=f"dataset of {ctx.service}", max_bytes=artefacts.MAX_DATASET_BYTES,
    )
    return parse_dataset(body.decode("utf-8"))


def submit_batch(deps: Deps[BatchSubmitSettings], ctx: ReleaseContext) -> ReleaseContext:
    """The on-demand latency sample, then one batch inference job per side (see the module doc)."""
    from modelgate.evaluation.batch import batch_input, check_batch_size, latency_sample
    from modelgate.evaluation.model_scorers import scoring_models_for
    from modelgate.evaluation.runner import run_cases

    assert ctx.policy is not None and ctx.eval_plan is not None and ctx.candidate_version and ctx.live_version
    plan, policy, bucket = ctx.eval_plan, ctx.policy, deps.settings.artifact_bucket
    mode = policy.evaluation
    cases = _cases(deps, ctx)
    releases = side_releases(deps, ctx, plan.live_configured)
    built = {side: batch_input(release, cases) for side, release in releases.items()}
    for side, records in built.items():  # refuse before any job exists
        check_batch_size(mode, records.records, side=side)
    # The latency sample first, on demand through the function's versions as EvaluateShard calls them:
    # a failure here leaves no job running behind the failed release.
    fn, _ = target(ctx)
    sample_cases = latency_sample(cases, mode.latency_sample, seed=ctx.release_id)
    invokers = {CANDIDATE: partial(lambda_alias.invoke_version, deps.lambda_, fn, ctx.candidate_version)}
    if plan.live_configured:
        invokers[LIVE] = partial(lambda_alias.invoke_version, deps.lambda_, fn, ctx.live_version)
    # Its results only: ReduceBatch builds the sample's report when it merges the latencies in.
    sample = run_cases(
        sample_cases, invokers, concurrency=policy.eval_concurrency, rate_limit=policy.eval_rate_limit_rps,
        scoring_models=scoring_models_for(policy.scoring_models) if policy.scoring_models else None,
    )
    sample_key = f"{_batch_dir(ctx)}/latency-sample.json"
    sample_version = put_json(deps.s3, bucket, sample_key, {"results": [r.model_dump(mode="json") for r in sample.results]})

    bedrock = deps.client("bedrock")
    jobs: list[BatchJob] = []
    for side, records in built.items():
        input_key = f"{INPUT_PREFIX}{ctx.service}/{ctx.release_id}/{side}.jsonl"
        deps.s3.put_object(
            Bucket=bucket, Key=input_key, Body=records.jsonl.encode("utf-8"), ContentType="application/jsonl"
        )
        unsendable_key = f"{_batch_dir(ctx)}/{side}-unsendable.json"
        put_json(deps.s3, bucket, unsendable_key, dict(records.unsendable))
        output_prefix = f"{OUTPUT_PREFIX}{ctx.service}/{ctx.release_id}/{side}/"
        model_id = releases[side].manifest.model.model_id
        created = bedrock.create_model_invocation_job(
            jobName=_job_name(ctx, side),
            roleArn=deps.settings.batch_role_arn,
            modelId=model_id,
            modelInvocationType="Converse",
            inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/{input_key}", "s3InputFormat": "JSONL"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/{output_prefix}"}},
            timeoutDurationInHours=mode.batch_timeout_hours,
            clientRequestToken=_token(ctx, side),
        )
        jobs.append(BatchJob(
            side=side, job_arn=created["jobArn"], model_id=model_id, input_key=input_key,
            output_prefix=output_prefix, records=records.records, unsendable_key=unsendable_key,
        ))

    now = clock.now()
    timeout_s = (mode.batch_timeout_hours + 1) * 3600
    batch = BatchPlan(
        jobs=jobs,
        sample=ShardResult(index=0, key=sample_key, version=sample_version, cases=len(sample_cases)),
        submitted_at=now.isoformat(),
        deadline=(now + timedelta(seconds=timeout_s)).isoformat(),
        wait_seconds=max(mode.poll_seconds, math.ceil(timeout_s / MAX_POLLS)),
    )
    deps.ledger.record(
        ctx.release_id,
        "BatchSubmitted",
        "; ".join(f"{j.side}: job {j.job_arn} ({j.records} records, model {j.model_id})" for j in jobs)
        + f"; {len(sample_cases)} case(s) run on demand for latency",
    )
    return ctx.model_copy(update={"eval_plan": plan.model_copy(update={"batch": batch})})


def poll_batch(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Each job's status: ``state`` "done" once every job has output to read; a job that ended
    without one, or still running past the deadline, fails the evaluation (``EvaluationFailed``)."""
    from modelgate.evaluation.batch import job_state

    assert ctx.eval_plan is not None and ctx.eval_plan.batch is not None
    batch = ctx.eval_plan.batch
    bedrock = deps.client("bedrock")
    statuses: dict[str, str] = {}
    for job in batch.jobs:
        got = bedrock.get_model_invocation_job(jobIdentifier=job.job_arn)
        status = str(got["status"])
        if job_state(status) == "failed":
            raise EvaluationFailed(
                f"batch inference job {job.job_arn} ({job.side}) ended {status}: "
                f"{str(got.get('message') or 'no message')[:1000]}"
            )
        statuses[job.side] = status
    done = all(job_state(s) == "done" for s in statuses.values())
    if not done and clock.now() > datetime.fromisoformat(batch.deadline):
        raise EvaluationFailed(
            f"batch inference still running at the deadline {batch.deadline} (submitted {batch.submitted_at}): "
            + ", ".join(f"{side} {status}" for side, status in statuses.items())
        )
    updated = batch.model_copy(update={"polls": batch.polls + 1, "state": "done" if done else "running"})
    return ctx.model_copy(update={"eval_plan": ctx.eval_plan.model_copy(update={"batch": updated})})


def _replay(answer: BatchAnswer, unsendable_reason: str | None, model_id: str) -> Callable[[], dict]:
    """What the case's call would have returned on demand (or raised), from its batch answer."""
    from modelgate import pricing

    def respond() -> dict:
        if answer.output is None:
            raise BatchRecordFailed(unsendable_reason or answer.error or "no answer")
        return {
            "output": answer.output,
            "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
            # What the call costs on demand, as the function prices it: the gate compares what
            # production would pay per request, not the batch discount.
            "cost_usd": pricing.cost_usd(model_id, answer.input_tokens, answer.output_tokens),
        }

    return respond


def reduce_batch(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """The jobs' output scored as on-demand results are, with the sample's latency: one report."""
    from modelgate.evaluation.batch import check_answers, parse_batch_output, with_sample_latency
    from modelgate.evaluation.comparison import CaseResult, build_report
    from modelgate.evaluation.model_scorers import scoring_models_for
    from modelgate.evaluation.runner import score_answers

    assert ctx.policy is not None and ctx.eval_plan is not None and ctx.eval_plan.batch is not None
    plan, batch, policy = ctx.eval_plan, ctx.eval_plan.batch, ctx.policy
    cases = _cases(deps, ctx)
    answers = {}
    for job in batch.jobs:
        unsendable = json.loads(deps.read_artifact(
            job.unsendable_key, None, error=EvaluationFailed, what=f"unsent cases of {job.side}",
            max_bytes=artefacts.MAX_RESULTS_BYTES,
        ))
        job_id = job.job_arn.rsplit("/", 1)[-1]
        out_key = f"{job.output_prefix}{job_id}/{job.input_key.rsplit('/', 1)[-1]}.out"
        body = deps.read_artifact(
            out_key, None, error=EvaluationFailed, what=f"batch output of {job.side} ({job.job_arn})",
            max_bytes=MAX_BATCH_OUTPUT_BYTES,
        )
        parsed = parse_batch_output(body.decode("utf-8").splitlines(), cases)
        check_answers(job.side, parsed, unsendable)
        answers[job.side] = {a.case_id: _replay(a, unsendable.get(a.case_id), job.model_id) for a in parsed}
    scored = score_answers(
        cases, answers, concurrency=policy.eval_concurrency,
        scoring_models=scoring_models_for(policy.scoring_models) if policy.scoring_models else None,
    )
    written = json.loads(deps.read_artifact(
        batch.sample.key, batch.sample.version, error=EvaluationFailed, what="latency sample",
        max_bytes=artefacts.MAX_RESULTS_BYTES,
    ))
    sample = build_report([CaseResult.model_validate(r) for r in written["results"]])
    report = with_sample_latency(scored, sample)
    summary = record_evaluation(deps, ctx, plan, report, shards=0, how="by Bedrock batch inference",
                                note=f"; latency from {batch.sample.cases} case(s) on demand")
    return ctx.model_copy(update={"evaluation": summary, "eval_plan": None})
