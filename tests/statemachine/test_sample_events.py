"""Every sample event under events/ runs through its handler and does what its name says.

The same files serve `sam local invoke -e` against a deployed dev stack (stack
``modelgate-dev``). Here the stack is template.yaml on the embedded AWS, fresh for each
sample, so before a sample runs:

* **Given**: the world the sample describes is built with the pipeline's own code: the
  sample release (commit ce04089f..., examples/support-bot/v1's prompt) uploaded, live
  (version 2) serving an earlier release (v3's prompt), the candidate (version 3)
  published, the evaluation done, the release waiting for approval or baking a 10% canary
  with a *real* waiting task (a one-state machine calling the sample's callback function),
  canary traffic sent through the live alias...
* **mapped**: what can't be the same on another stack is replaced in the event's text
  (base64 bodies included): the bucket, function and alarm names, the S3 object versions
  (moto makes its own), the signed approval link (links expire within a day: the sample's
  is replaced by the one the approver was mailed) and the bake window (moved to the
  last 15 minutes).
* **Then**: the handler must succeed, and its result and its effects (ledger, alias,
  alarms, S3, mail, the waiting task) are asserted.

Why the expectations are a table here rather than ``events/<fn>/<case>.expected.json``: what
a sample should produce is mostly effects (the alias moved, a task token kept, no token
in the mail, the waiting task failed with CanaryAlarm), which are code, and each needs its
Given; one table keeps the three together. It also keeps events/ holding only events, so
every file there can be passed to `sam local invoke -e` (and a glob of events/*/*.json
finds nothing else).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cfn_flip import load_yaml
from conftest import HANG_GUARD_SECONDS, JUMP_WHEN_IDLE
from modelgate_harness.control import Control
from modelgate_harness.driver import sample_stack
from modelgate_harness.polling import wait_until

from modelgate.adapters import lambda_alias
from modelgate.attestation import attestation_key, load_public_keys, public_key_pem, verify_envelope
from modelgate.chain import LedgerChain, verify_chain
from modelgate.contract import ReleaseContext, ShardEvent
from modelgate.manifest import PIN_KEY, PIN_VERSION, ArtifactRef, pin_environment
from modelgate.pipeline import approval, canary, candidate, evaluation
from modelgate.pipeline.outcome import record_outcome

ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = ROOT / "events"
EVENTS = sorted(EVENTS_DIR.glob("*/*.json"))
EXAMPLES = ROOT / "examples" / "support-bot"
TIME_FACTOR = 0.002
ROUTING_SEED = 20261130  # weighted aliases route at random, as on AWS: seeded so a run repeats

# What the samples name on the dev stack, replaced by the local stack's (or this run's) values.
SAMPLE_BUCKET = "modelgate-dev-artifactbucket-1a2b3c4d5e6f"
SAMPLE_FUNCTION = "modelgate-dev-svc-support-bot"
SAMPLE_ALARM_PREFIX = "modelgate-dev-canary-"
SAMPLE_RELEASE = "support-bot-ce04089f73fa-ed9c1e7291"
SAMPLE_COMMIT = "ce04089f73fa33b83811a7303831a5d2a7ad8f8e"
SAMPLE_PREFIX = f"releases/support-bot/{SAMPLE_COMMIT}/"
SAMPLE_MANIFEST_VERSION = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
SAMPLE_PROMPT_VERSION = "Wm0bWl0ZXJfdmVyc2lvbl8xMjM0NTY3OA"
SAMPLE_DATASET_VERSION = "dS3tVERsion.1"
SAMPLE_SHARD_VERSION = "Sh4rdVersion.0"
SAMPLE_REPORT_VERSION = "Yx8kqtJlcpXroDTDmJ.rmSpXd3dIbrQQ"
SAMPLE_BAKE_START = "2026-11-26T10:15:00+00:00"
SAMPLE_TASK_TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAeXampleTaskTokenNeverLoggedOnlyStoredInTheLedger=="
EARLIER_COMMIT = "5eed0000000000000000000000000000000e0001"  # the release live serves (v3's prompt)


def code_dirs() -> dict[str, str]:
    resources = load_yaml((ROOT / "template.yaml").read_text())["Resources"]
    return {
        Path(r["Properties"]["CodeUri"]).name: logical_id
        for logical_id, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
    }


# ---------------------------------------------------------------------- the sample's world
@dataclass
class World:
    """The local stack, the mapping from the samples' names onto it, and what the Givens built."""

    local: Any
    control: Control
    mapping: dict[str, str] = field(default_factory=dict)
    executions: dict[str, str] = field(default_factory=dict)  # callback kind -> waiting execution
    approvers: str | None = None  # the approvers' inbox (an SQS queue on the approval topic)

    @property
    def function(self) -> str:
        return self.control.outputs["SampleServiceFunctionName"]

    @property
    def ledger(self):
        return self.control.ledger()

    @property
    def deps(self):
        return self.control.deps()

    def client(self, name: str) -> Any:
        return self.control.client(name)

    def mapped(self, text: str) -> str:
        for sample, local in self.mapping.items():
            text = text.replace(sample, local)
        return text

    def event(self, name: str) -> dict:
        """A sample event mapped onto this stack (a base64 body is mapped inside too)."""
        event = json.loads(self.mapped((EVENTS_DIR / name).read_text()))
        if isinstance(event, dict) and event.get("isBase64Encoded") and event.get("body"):
            body = self.mapped(base64.b64decode(event["body"]).decode())
            event["body"] = base64.b64encode(body.encode()).decode()
        return event

    def release(self, name: str) -> ReleaseContext:
        """The release context a sample carries (mapped)."""
        event = self.event(name)
        return ReleaseContext.model_validate(event.get("release", event))

    def alias(self) -> tuple[str, dict[str, float]]:
        return lambda_alias.alias_state(self.client("lambda"), self.function, "live")

    def alarms(self) -> list[str]:
        """The canary alarms that exist (the stack's own alarms aside)."""
        alarms = self.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{self.local.stack_name}-canary-")
        return sorted(a["AlarmName"] for a in alarms["MetricAlarms"])

    def canary_alarms(self) -> list[str]:
        return [f"{self.local.stack_name}-canary-{SAMPLE_RELEASE}-{name}" for name in ("errors", "latency")]

    def mail(self) -> list[str]:
        """What the approvers received so far."""
        return [m["Body"] for m in self.client("sqs").receive_message(
            QueueUrl=self.approvers, MaxNumberOfMessages=10).get("Messages", [])]

    def execution(self, arn: str) -> dict:
        return self.client("stepfunctions").describe_execution(executionArn=arn)

    def ended(self, arn: str) -> dict:
        return wait_until(lambda: (d := self.execution(arn))["status"] != "RUNNING" and d, HANG_GUARD_SECONDS, f"{arn} to end",
                          progress=lambda: self.execution(arn)["status"])


@pytest.fixture
def world():
    """A fresh stack for each sample (the sample service's dataset uploaded): no sample sees
    what another one did. Nothing starts a release on its own: each sample is what runs."""
    with sample_stack(ROOT / "template.yaml", time_factor=TIME_FACTOR, seed=ROUTING_SEED,
                      jump_when_idle=JUMP_WHEN_IDLE) as (local, control):
        w = World(local, control)
        s3 = control.client("s3")
        dataset_key = "datasets/support-bot/dataset.jsonl"
        w.mapping.update({
            SAMPLE_BUCKET: control.bucket,
            SAMPLE_FUNCTION: w.function,
            SAMPLE_ALARM_PREFIX: f"{local.stack_name}-canary-",
            SAMPLE_DATASET_VERSION: s3.head_object(Bucket=control.bucket, Key=dataset_key)["VersionId"],
        })
        events = control.client("events")
        for rule in events.list_rule_names_by_target(TargetArn=local.stack.function("IntakeFunction").arn)["RuleNames"]:
            events.disable_rule(Name=rule)  # the Givens' uploads start no pipeline
        yield w


# ---------------------------------------------------------------------- Given
def approvers_subscribed(w: World) -> None:
    """An approver's mailbox (an SQS queue) subscribes to the approval topic."""
    sqs = w.client("sqs")
    w.approvers = sqs.create_queue(QueueName="approver-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=w.approvers, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    w.client("sns").subscribe(TopicArn=w.control.outputs["ApprovalTopicArn"], Protocol="sqs", Endpoint=arn,
                              Attributes={"RawMessageDelivery": "true"})


def _upload(w: World, folder: Path, commit: str) -> tuple[str, dict[str, str]]:
    """A release folder uploaded as CI would (prompts, then the manifest); (manifest version, prompt versions)."""
    s3, prefix = w.client("s3"), f"releases/support-bot/{commit}/"
    manifest = json.loads((folder / "model-config.json").read_text())
    manifest["source"]["commit"] = commit
    prompts = {}
    for prompt in manifest["prompts"]:
        put = s3.put_object(Bucket=w.control.bucket, Key=prefix + prompt["file"], Body=(folder / prompt["file"]).read_bytes())
        prompts[prompt["file"]] = put["VersionId"]
    put = s3.put_object(Bucket=w.control.bucket, Key=prefix + "model-config.json", Body=json.dumps(manifest).encode())
    return put["VersionId"], prompts


def release_uploaded(w: World) -> None:
    """CI uploaded the sample release: v1's prompt under commit ce04089f..."""
    version, prompts = _upload(w, EXAMPLES / "v1", SAMPLE_COMMIT)
    w.mapping[SAMPLE_MANIFEST_VERSION] = version
    w.mapping[SAMPLE_PROMPT_VERSION] = prompts["prompts/system.txt"]


def live_serves_an_earlier_release(w: World) -> None:
    """Version 2 pins an earlier release (v3's prompt) and serves live."""
    version, prompts = _upload(w, EXAMPLES / "v3", EARLIER_COMMIT)
    ref = ArtifactRef(bucket=w.control.bucket, key=f"releases/support-bot/{EARLIER_COMMIT}/model-config.json",
                      version_id=version)
    lam = w.client("lambda")
    live = lambda_alias.publish_candidate(lam, w.function, release_id="support-bot-5eed00000000-earlier",
                                          model_config=pin_environment(ref, *candidate.write_prompt_pin(
                                              w.client("s3"), ref, "support-bot", "support-bot-5eed00000000-earlier", prompts)))
    lambda_alias.point_alias(lam, w.function, "live", live)
    assert live == "2", live


def candidate_published(w: World) -> None:
    """Version 3 pins the sample release (as PublishCandidate leaves it); the alias didn't move."""
    ctx = w.release("publish_candidate/locked.json")
    version = lambda_alias.publish_candidate(w.client("lambda"), w.function, release_id=SAMPLE_RELEASE,
                                             model_config=pin_environment(ctx.artifact, *candidate.write_prompt_pin(
                                                 w.client("s3"), ctx.artifact, ctx.service, SAMPLE_RELEASE, ctx.prompt_versions)))
    assert version == "3", version


def shard_evaluated(w: World) -> None:
    """The evaluation's one shard ran (candidate and live on the 40 cases)."""
    shard = ShardEvent.model_validate(w.event("evaluate/shard.json"))
    w.mapping[SAMPLE_SHARD_VERSION] = evaluation.evaluate_shard(w.deps, shard.release, shard.shard).version


def evaluation_reduced(w: World) -> None:
    """The shards were merged into the evaluation report."""
    summary = evaluation.reduce_evaluation(w.deps, w.release("reduce_evaluation/shards-done.json")).evaluation
    w.mapping[SAMPLE_REPORT_VERSION] = summary.report_version


def _callback_task(w: World, function: str, release: ReleaseContext, kind: str) -> str:
    """A task waiting on ``function`` with a real task token, as the pipeline's callback
    states call it; returns once the function kept the token in the ledger."""
    sfn = w.client("stepfunctions")
    role = sfn.describe_state_machine(stateMachineArn=w.control.outputs["ReleasePipelineArn"])["roleArn"]
    definition = {"StartAt": "Wait", "States": {"Wait": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": w.local.stack.function(function).arn,
                       "Payload": {"release.$": "$", "task_token.$": "$$.Task.Token"}},
        "TimeoutSeconds": 86_400, "End": True}}}
    machine = sfn.create_state_machine(name=f"sample-{kind}", definition=json.dumps(definition), roleArn=role)
    arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name=release.release_id,
                              input=release.model_dump_json(by_alias=True))["executionArn"]
    ledger = w.ledger
    wait_until(lambda: ledger.get_token(release.release_id, kind), HANG_GUARD_SECONDS, f"the {kind} task's token",
               progress=lambda: w.execution(arn)["status"])
    w.executions[kind] = arn
    return arn


def waiting_for_approval(w: World) -> None:
    """Registered for manual approval; WaitForApproval holds a real token; the approver was
    mailed signed links (the samples' link becomes the mailed one)."""
    approvers_subscribed(w)
    ctx = w.release("request_approval/waiting.json")
    approval.register(w.deps, ctx)
    _callback_task(w, "RequestApprovalFunction", ctx, "approval")
    [message] = wait_until(w.mail, HANG_GUARD_SECONDS, "the approval mail")
    mailed = parse_qs(urlsplit(re.search(r"Approve:\s+(\S+)", message).group(1)).query)["t"][0]
    sample = json.loads((EVENTS_DIR / "approval_callback/get-confirm.json").read_text())["queryStringParameters"]["t"]
    w.mapping[sample] = mailed


def service_locked(w: World) -> None:
    """The release holds the service's lock (AcquireLock ran): ShiftTraffic moves the alias under it."""
    candidate.acquire_lock(w.deps, w.release("shift_traffic/approved.json"))


def canary_at_ten_percent(w: World) -> None:
    """The release holds the service's lock, 10% of live goes to version 3, its alarms watch it."""
    ctx = w.release("shift_traffic/approved.json")
    candidate.acquire_lock(w.deps, ctx)
    canary.shift_traffic(w.deps, ctx)
    assert w.alias() == ("2", {"3": 0.1})


def in_the_final_bake(w: World) -> None:
    """The final step: 99.99% of the alias on version 3 (still weighted), the alarms still armed."""
    ctx = w.release("shift_traffic/approved.json")
    canary.shift_traffic(w.deps, ctx.model_copy(update={"step": ctx.policy.step_plan()[-1],
                                                        "canary_alarms": w.canary_alarms()}))
    assert w.alias() == ("2", {"3": 0.9999})


def baking(w: World) -> None:
    """Bake holds a real token (StartBake kept it), its alarms quiet."""
    _callback_task(w, "StartBakeFunction", w.release("start_bake/canary.json"), "bake")


def traffic_during_the_bake(w: World) -> None:
    """The bake began 15 minutes ago (the runtime's nominal time, which the pipeline reads)
    and requests went through the live alias since, until the 10% canary's share, drawn at
    random per request, reached 25 (above the policy's 20); then the metrics delay passed."""
    w.mapping[SAMPLE_BAKE_START] = (w.local.clock.datetime() - timedelta(minutes=15)).isoformat()
    lam = w.client("lambda")
    requests = [json.loads(line) for line in (EXAMPLES / "traffic.jsonl").read_text().splitlines() if line.strip()]
    on_canary = 0
    for i in range(2000):
        response = lam.invoke(FunctionName=w.function, Qualifier="live",
                              Payload=json.dumps({"inputs": requests[i % len(requests)]}).encode())
        assert "FunctionError" not in response, response["Payload"].read()
        on_canary += response["ExecutedVersion"] == "3"
        if on_canary == 25:
            break
    assert on_canary == 25
    # The judge's window ends the policy's metrics delay (60 s) before now, at a whole minute
    w.local.sleep(2 * 60 + 1)


# ---------------------------------------------------------------------- Then
def started_the_release(w: World, result: dict) -> None:
    # One execution, named after the release the upload is; the ledger received it
    assert result["release_id"] == SAMPLE_RELEASE and result["started"] is True, result
    execution = w.execution(result["execution_arn"])
    assert execution["name"] == SAMPLE_RELEASE
    assert json.loads(execution["input"])["artifact"]["version_id"] == SAMPLE_MANIFEST_VERSION
    assert w.ledger.get(SAMPLE_RELEASE)["execution_arn"] == result["execution_arn"]


def validated_the_release(w: World, result: dict) -> None:
    ctx = ReleaseContext.model_validate(result)
    assert ctx.manifest.model.model_id == "local.retrieval-small-v1:0"
    assert (ctx.function_name, ctx.alias, ctx.branch) == (w.function, "live", "main")
    assert ctx.prompt_versions == {"prompts/system.txt": w.mapping[SAMPLE_PROMPT_VERSION]}
    assert ctx.policy.canary_alarms == w.release("acquire_lock/validated.json").policy.canary_alarms
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "Validated"


def took_the_lock(w: World, result: dict) -> None:
    assert ReleaseContext.model_validate(result).release_id == SAMPLE_RELEASE
    assert w.ledger.lock_holder("support-bot") == SAMPLE_RELEASE
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "Locked"


def published_version_3(w: World, result: dict) -> None:
    ctx = ReleaseContext.model_validate(result)
    assert (ctx.candidate_version, ctx.live_version) == ("3", "2")
    pinned = lambda_alias.version_environment(w.client("lambda"), w.function, "3")
    assert (pinned[PIN_KEY], pinned[PIN_VERSION]) == (SAMPLE_PREFIX + "model-config.json",
                                                      w.mapping[SAMPLE_MANIFEST_VERSION])
    assert w.alias() == ("2", {})
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "CandidatePublished"


def planned_one_shard(w: World, result: dict) -> None:
    plan = ReleaseContext.model_validate(result).eval_plan
    assert (plan.n_cases, plan.dataset_version, plan.live_configured) == (40, w.mapping[SAMPLE_DATASET_VERSION], True)
    assert [(s.start, s.end) for s in plan.shards] == [(0, 40)]


def evaluated_the_shard(w: World, result: dict) -> None:
    assert (result["index"], result["cases"]) == (0, 40)
    body = w.client("s3").get_object(Bucket=w.control.bucket, Key=result["key"], VersionId=result["version"])["Body"]
    written = json.loads(body.read())
    results = written["results"]
    assert written["judge"] is None  # the sample dataset has no llm_judge case
    assert sorted({r["side"] for r in results}) == ["candidate", "live"] and len(results) == 80
    assert not [r for r in results if r.get("error")]


def submitted_the_batch_jobs(w: World, result: dict) -> None:
    batch = ReleaseContext.model_validate(result).eval_plan.batch
    # One Converse-type job per side, each with the 40 cases, as the batch service role
    assert [(j.side, j.records) for j in batch.jobs] == [("candidate", 40), ("live", 40)]
    bedrock = w.client("bedrock")
    for job in batch.jobs:
        described = bedrock.get_model_invocation_job(jobIdentifier=job.job_arn)
        assert described["roleArn"] == w.local.stack.attribute("BatchInferenceRole", "Arn")
        body = w.client("s3").get_object(Bucket=w.control.bucket, Key=job.input_key)["Body"].read().decode()
        assert len(body.splitlines()) == 40 and '"recordId":"C0000000000"' in body
    # And 4 cases ran on demand for latency, both sides; the wait loop starts at the policy's interval
    sample = json.loads(w.client("s3").get_object(Bucket=w.control.bucket, Key=batch.sample.key)["Body"].read())
    assert batch.sample.cases == 4 and len(sample["results"]) == 8 and batch.state == "running"
    assert batch.wait_seconds == 300
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "BatchSubmitted"


def reduced_into_a_report(w: World, result: dict) -> None:
    ctx = ReleaseContext.model_validate(result)
    assert (ctx.evaluation.n_cases, ctx.evaluation.shards, ctx.evaluation.baseline) == (40, 1, "live")
    assert ctx.eval_plan is None and ctx.eval_shards is None
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "Evaluated"


def passed_the_gate(w: World, result: dict) -> None:
    ctx = ReleaseContext.model_validate(result)
    assert ctx.gate.passed, ctx.gate
    w.client("s3").head_object(Bucket=w.control.bucket, Key=ctx.evaluation.report_html_key)
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "GatePassed"


def waits_for_an_approver(w: World, result: dict) -> None:
    assert ReleaseContext.model_validate(result).approval is None  # the sample service's policy is manual
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "PendingManualApproval"


def asked_the_approvers(w: World, result: dict) -> None:
    assert result == {"release_id": SAMPLE_RELEASE, "requested": True}
    # The token is kept in the ledger, and never mailed
    assert w.ledger.get_token(SAMPLE_RELEASE, "approval") == SAMPLE_TASK_TOKEN
    [message] = wait_until(w.mail, HANG_GUARD_SECONDS, "the approval mail")
    assert SAMPLE_TASK_TOKEN not in message and SAMPLE_RELEASE in message
    # The mail links to the stack's approval page, one signed link per decision
    callback = w.control.outputs["ApprovalCallbackUrl"].rstrip("/") + "/decide?t="
    for decision in ("Approve", "Reject"):
        assert re.search(rf"{decision}:\s+(\S+)", message).group(1).startswith(callback)


def started_the_canary(w: World, result: dict) -> None:
    ctx = ReleaseContext.model_validate(result)
    assert w.alias() == ("2", {"3": 0.1})
    assert ctx.canary_alarms == w.canary_alarms() and w.alarms() == sorted(w.canary_alarms())
    assert (ctx.step.index, ctx.step.weight) == (0, 0.1)
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "Canary"


def armed_the_bake(w: World, result: dict) -> None:
    assert result == {"release_id": SAMPLE_RELEASE, "armed": True}
    assert w.ledger.get_token(SAMPLE_RELEASE, "bake") == SAMPLE_TASK_TOKEN
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "Baking"


def proceeds_to_the_final_bake(w: World, result: dict) -> None:
    ctx = ReleaseContext.model_validate(result)
    assert ctx.judge_action == "proceed"
    assert (ctx.step.index, ctx.step.weight, ctx.step.is_final) == (1, 0.9999, True)
    record = w.ledger.get(SAMPLE_RELEASE)
    assert record["status"] == "CanaryJudged" and record["verdict"]["verdict"] == "pass", record["verdict"]


def sent_synthetic_traffic(w: World, result: dict) -> None:
    assert ReleaseContext.model_validate(result).release_id == SAMPLE_RELEASE
    detail = w.ledger.get(SAMPLE_RELEASE)["history"][-1]["detail"]
    assert detail == f"201 of 201 synthetic requests through {w.function}:live, 8 at a time (0 failed)"
    executed = [r.executed_version for r in w.local.invocations(w.function)]
    # its 10 % share, drawn at random per request (binomial over 201: mean 20.1, sd 4.3; 4 sd)
    assert 3 <= executed.count("3") <= 37 and executed.count("3") + executed.count("2") == 201, executed


def promoted(w: World, result: dict) -> None:
    assert ReleaseContext.model_validate(result).candidate_version == "3"
    assert w.alias() == ("3", {})
    assert w.alarms() == []
    assert w.ledger.lock_holder("support-bot") is None
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "Promoted"


def rolled_back(w: World, result: dict) -> None:
    outcome = ReleaseContext.model_validate(result).outcome
    assert (outcome.status, outcome.error) == ("RolledBack", "CanaryAlarm")
    assert f"{w.local.stack_name}-canary-{SAMPLE_RELEASE}-errors is in ALARM" in outcome.reason
    assert w.alias() == ("2", {})
    assert w.alarms() == []
    assert w.ledger.lock_holder("support-bot") is None
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "RolledBack"


def recorded_gate_failed(w: World, result: dict) -> None:
    outcome = ReleaseContext.model_validate(result).outcome
    assert (outcome.status, outcome.error) == ("GateFailed", "GateFailed")
    assert outcome.reason.startswith("GateFailed: gate failed: accuracy_drop: candidate 0.611 vs live 0.861")
    record = w.ledger.get(SAMPLE_RELEASE)
    assert (record["status"], record["reason"]) == ("GateFailed", outcome.reason)


def failed_the_bake(w: World, result: dict) -> None:
    assert (result["action"], result["release_id"]) == ("bake failed", SAMPLE_RELEASE), result
    bake = w.ended(w.executions["bake"])
    assert (bake["status"], bake["error"]) == ("FAILED", "CanaryAlarm")
    assert f"{w.local.stack_name}-canary-{SAMPLE_RELEASE}-errors is in ALARM: Threshold Crossed" in bake["cause"]


def answered(w: World, result: dict) -> None:
    assert result["release"]["commit"] == SAMPLE_COMMIT, result  # $LATEST pins the sample release
    assert "Reset password" in result["output"]


def reevaluated_live(w: World, result: dict) -> None:
    # live (version 2) was put there by no promoted release with an evaluation: nothing to pair with
    assert result["details"]["verdict"] == "insufficient" and result["details"]["live_version"] == "2", result
    assert result["kind"] == "reevaluation" and result["pk"] == "MONITOR#support-bot"
    # and the service's dashboard was written, with the event in its text widget
    body = json.loads(w.client("cloudwatch").get_dashboard(DashboardName=result["dashboard"])["DashboardBody"])
    assert "insufficient" in body["widgets"][-1]["properties"]["markdown"]


def drift_checked(w: World, result: dict) -> None:
    # live was put there by no promoted release, so there is no baseline: "insufficient", never "no drift"
    assert result["verdict"] == "insufficient" and "nothing to compare with" in result["summary"], result
    # the verdict is written beside its HTML report, and in the monitoring journal (modelgate status)
    page = w.client("s3").get_object(Bucket=w.control.bucket, Key=result["report_key"])["Body"].read().decode()
    assert "insufficient" in page
    entries = [i for i in w.client("dynamodb").query(
        TableName=w.control.outputs["LedgerTableName"], KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "MONITOR#support-bot"}})["Items"] if i["kind"]["S"] == "drift"]
    # (the stack's own schedule also ran the check when it was deployed, as a rate schedule does on AWS)
    assert entries and all(e["details"]["M"]["verdict"]["S"] == "insufficient" for e in entries)
    assert "actions" not in result  # nothing to act on


def showed_the_confirmation_page(w: World, result: dict) -> None:
    assert result["statusCode"] == 200, result["body"]
    assert "Opening this page decided nothing" in result["body"] and "Approve this release" in result["body"]
    # Nothing was decided: the release still waits, its task too
    assert w.ledger.get(SAMPLE_RELEASE)["status"] == "PendingManualApproval"
    assert w.ledger.get_token(SAMPLE_RELEASE, "approval")
    assert w.execution(w.executions["approval"])["status"] == "RUNNING"


def approved(w: World, result: dict) -> None:
    assert result["statusCode"] == 200, result["body"]
    assert "was approved by link:bob@example.com" in result["body"]
    record = w.ledger.get(SAMPLE_RELEASE)
    assert record["status"] == "Approved"
    assert (record["approval"]["approver"], record["approval"]["comment"]) == (
        "link:bob@example.com", "Accuracy up 11 points, latency flat.")
    # And the waiting task went on with the approval as its result
    task = w.ended(w.executions["approval"])
    assert task["status"] == "SUCCEEDED" and json.loads(task["output"])["approver"] == "link:bob@example.com"


def approved_through_iam(w: World, result: dict) -> None:
    """The IAM decision URL approved as the caller Lambda authenticated (an SSO session of Bob's)."""
    assert result["statusCode"] == 200, result["body"]
    approver = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Release_1a2b3c4d/bob@example.com"
    assert json.loads(result["body"])["approval"]["approver"] == approver
    record = w.ledger.get(SAMPLE_RELEASE)
    assert record["status"] == "Approved" and record["approval"]["approver"] == approver
    task = w.ended(w.executions["approval"])
    assert task["status"] == "SUCCEEDED" and json.loads(task["output"])["approver"] == approver


def gate_failure_recorded(w: World) -> None:
    """RecordOutcome ended the sample release GateFailed (what Attest follows)."""
    record_outcome(w.deps, w.release("record_outcome/gate-failed.json"))


def attested(w: World, result: dict) -> None:
    assert ReleaseContext.model_validate(result).release_id == SAMPLE_RELEASE
    # The release is the first record of its service's chain, intact
    records, broken, head = LedgerChain(w.ledger.table).read("support-bot")
    assert verify_chain("support-bot", records, head, broken).intact
    assert [(r.release_id, r.body["status"]) for r in records] == [(SAMPLE_RELEASE, "GateFailed")]
    # and its attestation, beside its report, verifies with the stack key's public half alone
    key_arn = w.control.outputs["SigningKeyArn"]
    public = load_public_keys(public_key_pem(w.client("kms"), key_arn))
    envelope = w.client("s3").get_object(Bucket=w.control.bucket, Key=attestation_key("support-bot", SAMPLE_RELEASE))
    verified = verify_envelope(envelope["Body"].read(), public)
    assert verified.keyid == key_arn
    assert verified.predicate["outcome"]["status"] == "GateFailed"
    assert verified.predicate["ledger"]["record_sha256"] == records[0].record_hash
    manifest = w.client("s3").get_object(Bucket=w.control.bucket, Key=SAMPLE_PREFIX + "model-config.json")
    assert verified.subjects()["model-config.json"] == hashlib.sha256(manifest["Body"].read()).hexdigest()


@dataclass(frozen=True)
class Expected:
    given: tuple[Callable[[World], None], ...]
    then: Callable[[World, Any], None]


UPLOADED = (release_uploaded, live_serves_an_earlier_release)
PUBLISHED = (*UPLOADED, candidate_published)
CANARY = (*PUBLISHED, canary_at_ten_percent)

SAMPLES: dict[str, Expected] = {
    "intake/manifest-uploaded.json": Expected((), started_the_release),
    "validate/release-uploaded.json": Expected((release_uploaded,), validated_the_release),
    "acquire_lock/validated.json": Expected((), took_the_lock),
    "publish_candidate/locked.json": Expected(UPLOADED, published_version_3),
    "plan_evaluation/published.json": Expected(PUBLISHED, planned_one_shard),
    "evaluate/shard.json": Expected(PUBLISHED, evaluated_the_shard),
    "reduce_evaluation/shards-done.json": Expected((*PUBLISHED, shard_evaluated), reduced_into_a_report),
    "batch_evaluation/planned.json": Expected(PUBLISHED, submitted_the_batch_jobs),
    "gate/evaluated.json": Expected((*PUBLISHED, shard_evaluated, evaluation_reduced), passed_the_gate),
    "register/gate-passed.json": Expected((), waits_for_an_approver),
    "request_approval/waiting.json": Expected((approvers_subscribed,), asked_the_approvers),
    "approval_callback/get-confirm.json": Expected((waiting_for_approval,), showed_the_confirmation_page),
    "approval_callback/post-approve.json": Expected((waiting_for_approval,), approved),
    "approval_decision/approve-as-iam.json": Expected((waiting_for_approval,), approved_through_iam),
    "shift_traffic/approved.json": Expected((*PUBLISHED, service_locked), started_the_canary),
    "start_bake/canary.json": Expected(CANARY, armed_the_bake),
    "on_alarm/canary-alarm.json": Expected((*CANARY, baking), failed_the_bake),
    "check_canary/baked.json": Expected((*CANARY, traffic_during_the_bake), proceeds_to_the_final_bake),
    "send_synthetic/not-enough-traffic.json": Expected(CANARY, sent_synthetic_traffic),
    "promote/healthy.json": Expected((*CANARY, in_the_final_bake), promoted),
    "rollback/canary-alarm.json": Expected(CANARY, rolled_back),
    "record_outcome/gate-failed.json": Expected((), recorded_gate_failed),
    "attest/gate-failed.json": Expected((release_uploaded, gate_failure_recorded), attested),
    "inference/question.json": Expected(PUBLISHED, answered),
    "monitor/reevaluate.json": Expected(UPLOADED, reevaluated_live),
    "drift_check/scheduled.json": Expected((), drift_checked),
}


def test_every_event_file_has_an_expectation():
    assert {f"{p.parent.name}/{p.name}" for p in EVENTS} == set(SAMPLES)


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_event_does_what_its_name_says(world, path):
    name = f"{path.parent.name}/{path.name}"
    expected = SAMPLES[name]
    # Given the world the sample describes
    for given in expected.given:
        given(world)
    # When the sample, mapped onto this stack, is invoked the way Lambda would
    response = world.client("lambda").invoke(
        FunctionName=world.local.function_name(code_dirs()[path.parent.name]),
        Payload=json.dumps(world.event(name)).encode(),
    )
    payload = json.loads(response["Payload"].read())
    # Then it succeeds with the result and effects its name promises
    assert "FunctionError" not in response, payload
    expected.then(world, payload)
