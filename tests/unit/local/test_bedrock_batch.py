"""Bedrock batch inference on the embedded AWS (modelgate_emulator.bedrock_batch)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from modelgate_emulator import iam_policy
from modelgate_emulator.bedrock_batch import BatchInference, JobFault
from modelgate_emulator.clock import Clock
from modelgate_harness.local_eval import load_release_folder
from moto import mock_aws

from modelgate.evaluation.batch import batch_input, job_state, parse_batch_output
from modelgate.evaluation.dataset import parse_dataset

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "support-bot"
CASES = parse_dataset((EXAMPLE / "dataset.jsonl").read_text())
ROLE = "arn:aws:iam::123456789012:role/batch-service-role"


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def now(self) -> float:
        return self.t

    def real_seconds(self, nominal_seconds: float) -> float:
        return 0.0


@pytest.fixture
def batch() -> Iterator[tuple[BatchInference, FakeClock, Any, Any]]:
    clock = FakeClock()
    with mock_aws():
        jobs = BatchInference(clock=clock, region="us-east-1", account_id="123456789012",
                              submitted_seconds=60, seconds_per_record=0.5, min_in_progress_seconds=60, min_records=1)
        with jobs.installed():
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="art")
            boto3.client("iam", region_name="us-east-1").create_role(
                RoleName="batch-service-role", AssumeRolePolicyDocument=json.dumps(trust()))
            yield jobs, clock, s3, boto3.client("bedrock", region_name="us-east-1")


def trust(account: str = "123456789012", source_arn: str = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/*",
          service: str = "bedrock.amazonaws.com") -> dict:
    """The trust policy of "Create a custom service role for batch inference" (Amazon Bedrock User Guide)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account}, "ArnEquals": {"aws:SourceArn": source_arn}},
    }]}


def create(bedrock: Any, **overrides: Any) -> str:
    params = {
        "jobName": "eval-candidate", "roleArn": ROLE, "modelId": "local.retrieval-small-v1:0",
        "modelInvocationType": "Converse",
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://art/batch/in/candidate.jsonl"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://art/batch/out/"}},
        **overrides,
    }
    return bedrock.create_model_invocation_job(**params)["jobArn"]


def test_a_job_moves_through_its_states_in_nominal_time_and_writes_converse_answers(batch) -> None:
    _, clock, s3, bedrock = batch
    # Given v2's evaluation cases as a Converse-type job input in S3
    release = load_release_folder(EXAMPLE / "v2")
    s3.put_object(Bucket="art", Key="batch/in/candidate.jsonl", Body=batch_input(release, CASES).jsonl.encode())
    # When the job is created
    arn = create(bedrock)
    job_id = arn.rsplit("/", 1)[1]
    assert arn.startswith("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/")
    # Then it is Submitted, InProgress after 60 nominal s, Completed 60 s later (40 records x 0.5 s < 60 s)
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Submitted"
    clock.t += 60
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "InProgress"
    assert "Contents" not in s3.list_objects_v2(Bucket="art", Prefix="batch/out/")
    clock.t += 59.9
    assert job_state(bedrock.get_model_invocation_job(jobIdentifier=job_id)["status"]) == "running"
    clock.t += 0.1
    done = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert done["status"] == "Completed" and "endTime" in done
    # And the output, one .out file under <output>/<job id>/, answers every record as the local model does
    body = s3.get_object(Bucket="art", Key=f"batch/out/{job_id}/candidate.jsonl.out")["Body"].read().decode()
    answers = parse_batch_output(body.splitlines(), CASES)
    assert all(a.error is None and a.output for a in answers)
    assert sum(a.input_tokens for a in answers) > 0


def test_the_same_client_request_token_is_the_same_job(batch) -> None:
    _, _, s3, bedrock = batch
    s3.put_object(Bucket="art", Key="batch/in/candidate.jsonl", Body=b"")
    assert create(bedrock, clientRequestToken="release-1") == create(bedrock, clientRequestToken="release-1")
    assert create(bedrock, clientRequestToken="release-2") != create(bedrock, clientRequestToken="release-1")


def test_a_record_the_model_cannot_answer_is_an_error_line(batch) -> None:
    _, clock, s3, bedrock = batch
    line = {"recordId": "C0000000000", "modelInput": {"messages": "not a list"}}
    s3.put_object(Bucket="art", Key="batch/in/candidate.jsonl", Body=json.dumps(line).encode())
    arn = create(bedrock)
    clock.t += 60
    bedrock.get_model_invocation_job(jobIdentifier=arn)
    clock.t += 60
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Completed"
    out = s3.get_object(Bucket="art", Key=f"batch/out/{arn.rsplit('/', 1)[1]}/candidate.jsonl.out")["Body"].read()
    record = json.loads(out)
    assert record["recordId"] == "C0000000000" and record["error"]["errorCode"] == 400


def test_missing_input_fails_the_job_naming_why(batch) -> None:
    _, clock, _, bedrock = batch
    arn = create(bedrock)
    clock.t += 60
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Failed" and "could not read its input" in job["message"] and ROLE in job["message"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"modelInvocationType": "InvokeModel"}, "'Converse' jobs only"),
        ({"modelId": "anthropic.claude-3-haiku-20240307-v1:0"}, "local.* models only"),
        ({"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "https://art/in.jsonl"}}}, "not an s3://bucket/key URI"),
    ],
)
def test_a_job_bedrock_would_refuse_is_a_validation_exception(batch, overrides: dict, message: str) -> None:
    _, _, _, bedrock = batch
    with pytest.raises(ClientError) as refused:
        create(bedrock, **overrides)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert message in refused.value.response["Error"]["Message"]


def test_an_unknown_job_is_not_found(batch) -> None:
    _, _, _, bedrock = batch
    with pytest.raises(ClientError) as missing:
        bedrock.get_model_invocation_job(jobIdentifier="nosuchjob000")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_creating_a_job_needs_the_action_on_job_and_model_and_pass_role_to_bedrock() -> None:
    requests = iam_policy.requests_for_call(
        "bedrock", "CreateModelInvocationJob",
        {"jobName": "j", "roleArn": ROLE, "modelId": "local.retrieval-small-v1:0"},
        region="us-east-1", account_id="123456789012",
    )
    assert [(r.action, r.resource) for r in requests] == [
        ("bedrock:CreateModelInvocationJob", "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/*"),
        ("bedrock:CreateModelInvocationJob", "arn:aws:bedrock:us-east-1::foundation-model/local.retrieval-small-v1:0"),
        ("iam:PassRole", ROLE),
    ]
    assert requests[2].context == {"iam:PassedToService": "bedrock.amazonaws.com"}
    [get] = iam_policy.requests_for_call(
        "bedrock", "GetModelInvocationJob", {"jobIdentifier": "abc123"}, region="us-east-1", account_id="123456789012"
    )
    assert (get.action, get.resource) == (
        "bedrock:GetModelInvocationJob", "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123")


def put_cases(s3: Any, cases: list | None = None) -> None:
    release = load_release_folder(EXAMPLE / "v2")
    s3.put_object(Bucket="art", Key="batch/in/candidate.jsonl", Body=batch_input(release, cases or CASES).jsonl.encode())


def run_to_end(bedrock: Any, clock: FakeClock, arn: str) -> dict:
    for _ in range(10):
        job = bedrock.get_model_invocation_job(jobIdentifier=arn)
        if job_state(job["status"]) != "running":
            return job
        clock.t += 60
    raise AssertionError(f"job {arn} still {job['status']}")


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        (trust(account="999999999999"), "aws:SourceAccount of another account"),
        (trust(source_arn="arn:aws:bedrock:us-east-1:123456789012:model-customization-job/*"), "another kind of job"),
        (trust(service="lambda.amazonaws.com"), "another service"),
    ],
)
def test_a_role_bedrock_cannot_assume_for_the_job_is_refused(batch, policy: dict, why: str) -> None:
    _, _, _, bedrock = batch
    # Given a service role whose trust policy doesn't let Bedrock assume it for this job
    boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="untrusting", AssumeRolePolicyDocument=json.dumps(policy))
    # When a job names it, then Bedrock refuses the job (ValidationException)
    with pytest.raises(ClientError) as refused:
        create(bedrock, roleArn="arn:aws:iam::123456789012:role/untrusting")
    assert refused.value.response["Error"]["Code"] == "ValidationException", why
    assert "can't assume the service role" in refused.value.response["Error"]["Message"]


def test_a_role_that_does_not_exist_is_refused(batch) -> None:
    _, _, _, bedrock = batch
    with pytest.raises(ClientError) as refused:
        create(bedrock, roleArn="arn:aws:iam::123456789012:role/nosuchrole")
    assert "nosuchrole" in refused.value.response["Error"]["Message"]


def test_fewer_records_than_the_quota_fail_the_job_at_validation(batch) -> None:
    jobs, clock, s3, bedrock = batch
    # Given an account whose minimum is 41 records per job, and a 40-record input
    jobs.min_records = 41
    put_cases(s3)
    # When the job runs, then it fails before any record is answered, saying why
    job = run_to_end(bedrock, clock, create(bedrock))
    assert job["status"] == "Failed" and "40 record(s), fewer than the minimum" in job["message"] and "(41)" in job["message"]
    assert "Contents" not in s3.list_objects_v2(Bucket="art", Prefix="batch/out/")


def test_an_injected_failure_ends_the_next_job_with_its_status_and_message(batch) -> None:
    jobs, clock, s3, bedrock = batch
    put_cases(s3)
    jobs.inject(JobFault(status="Expired", message="the job did not start before its timeout"))
    first, second = create(bedrock), create(bedrock, jobName="eval-live")
    assert run_to_end(bedrock, clock, first)["status"] == "Expired"
    assert run_to_end(bedrock, clock, first)["message"] == "the job did not start before its timeout"
    assert run_to_end(bedrock, clock, second)["status"] == "Completed"  # one fault, one job


def test_injected_record_errors_and_unanswered_records_reach_the_output(batch) -> None:
    jobs, clock, s3, bedrock = batch
    put_cases(s3)
    jobs.inject(JobFault(error_records=3, error_code=503, unanswered=2))
    arn = create(bedrock)
    assert run_to_end(bedrock, clock, arn)["status"] == "PartiallyCompleted"
    body = s3.get_object(Bucket="art", Key=f"batch/out/{arn.rsplit('/', 1)[1]}/candidate.jsonl.out")["Body"].read()
    answers = parse_batch_output(body.decode().splitlines(), CASES)
    assert [a.error_code for a in answers[:4]] == [503, 503, 503, None]
    assert [a.missing for a in answers[-3:]] == [False, True, True]


def test_the_embedded_aws_authorises_a_job_before_it_is_created() -> None:
    from modelgate_emulator import LocalAWS, iam

    template = Path(__file__).resolve().parents[3] / "template.yaml"
    with LocalAWS(template, stack_name="batch-iam", parameters={"ModelProvider": "local"}) as local:
        role = local.stack.attribute
        params = {
            "jobName": "eval-candidate", "modelId": "local.retrieval-small-v1:0", "modelInvocationType": "Converse",
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://art/batch-inference/input/c.jsonl"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://art/batch-inference/output/"}},
        }
        # A role without the grant (PollBatch may only read jobs) is refused CreateModelInvocationJob
        with iam.acting_as(iam.role_principal(role("PollBatchFunctionRole", "Arn"), "poll")):
            with pytest.raises(ClientError) as denied:
                boto3.client("bedrock", region_name="us-east-1").create_model_invocation_job(
                    roleArn=role("BatchInferenceRole", "Arn"), **params)
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert local.enforcer.denied()[-1].action == "bedrock:CreateModelInvocationJob"
        # And SubmitBatch may pass the batch service role, and no other
        with iam.acting_as(iam.role_principal(role("SubmitBatchFunctionRole", "Arn"), "submit")):
            with pytest.raises(ClientError) as denied:
                boto3.client("bedrock", region_name="us-east-1").create_model_invocation_job(
                    roleArn=role("PollBatchFunctionRole", "Arn"), **params)
            assert local.enforcer.denied()[-1].action == "iam:PassRole"
            arn = boto3.client("bedrock", region_name="us-east-1").create_model_invocation_job(
                roleArn=role("BatchInferenceRole", "Arn"), **params)["jobArn"]
        assert ":model-invocation-job/" in arn
