"""Monitoring live: the policy's actions, the scheduled re-evaluation and the model lifecycle watch."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from pydantic import ValidationError

from modelgate.contract import EvaluationSummary
from modelgate.errors import ConfigurationError, ManifestInvalid
from modelgate.evaluation.comparison import CANDIDATE, CaseResult, build_report
from modelgate.manifest import Manifest
from modelgate.monitor import lifecycle, reevaluation
from modelgate.monitor.actions import act
from modelgate.monitor.journal import Journal
from modelgate.monitor.models import foundation_model_id, lifecycle_status, refuse_legacy
from modelgate.monitor.policy import MonitoringPolicy, ReevaluationPolicy
from modelgate.pipeline.deps import Deps
from modelgate.policy import ReleasePolicy
from modelgate.settings import MonitorSettings

BUCKET, DATASET_KEY, SERVICE = "artefacts", "datasets/support-bot/dataset.jsonl", "support-bot"
FUNCTION = f"test-svc-{SERVICE}"  # conftest.World's service function

MONITOR_FUNCTION = "test-monitor"
ATTEST_FUNCTION = "test-attest"


def monitor_deps(world) -> Deps:
    s = world.settings
    settings = MonitorSettings(
        LEDGER_TABLE=s.ledger_table, ARTIFACT_BUCKET=s.artifact_bucket, SERVICES_PREFIX=s.services_prefix,
        APPROVAL_TOPIC_ARN=s.approval_topic_arn, STACK_NAME=s.stack_name,
        ALERT_TOPIC_ARN=s.approval_topic_arn,  # the world's one topic, delivered to its inbox
        MONITOR_FUNCTION_NAME=MONITOR_FUNCTION, ATTEST_FUNCTION_NAME=ATTEST_FUNCTION,
    )
    return Deps(settings, world.client, world.ledger)


class ServiceAnswers:
    """The service function's Lambda client, answering each question per ``answer(version, question)``;
    asynchronous invokes (a requested re-evaluation) are recorded, everything else is moto's."""

    def __init__(self, real: Any, answer) -> None:
        self._real, self._answer = real, answer
        self.async_invokes: list[dict] = []
        self.revocations: list[dict] = []  # what the Attest function was asked to revoke (its answer: revoked)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def invoke(self, **kwargs: Any) -> dict:
        if kwargs["FunctionName"] == ATTEST_FUNCTION:
            request = json.loads(kwargs["Payload"])["revoke"]
            self.revocations.append(request)
            body = {"revoked": True, "release_id": request["release_id"], "key": "reports/.../revocation.intoto.json"}
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(body).encode())}
        if kwargs.get("InvocationType") == "Event":
            self.async_invokes.append({**kwargs, "Payload": json.loads(kwargs["Payload"])})
            return {"StatusCode": 202}
        question = json.loads(kwargs["Payload"])["inputs"]["question"]
        body = {"output": self._answer(kwargs["Qualifier"], question), "usage": {}, "cost_usd": 0.0}
        return {"StatusCode": 200, "ExecutedVersion": kwargs["Qualifier"], "Payload": io.BytesIO(json.dumps(body).encode())}


def promoted_release(world, release_id: str, *, candidate: str, live_before: str, cases: int = 12) -> None:
    """A release promoted version ``candidate`` after an evaluation in which it answered every case right."""
    lines = [json.dumps({"id": f"case-{i:02d}", "inputs": {"question": f"q{i}"}, "expected": "yes", "scorer": "contains"})
             for i in range(cases)]
    dataset = world.client("s3").put_object(Bucket=BUCKET, Key=DATASET_KEY, Body="\n".join(lines).encode())
    results = [CaseResult(side=CANDIDATE, case_id=f"case-{i:02d}", score=1.0, latency_ms=10.0, output="yes",
                          expected="yes", inputs={"question": f"q{i}"}) for i in range(cases)]
    report = build_report(results)
    key = f"reports/{SERVICE}/{release_id}/evaluation.json"
    put = world.client("s3").put_object(Bucket=BUCKET, Key=key, Body=report.model_dump_json().encode())
    summary = EvaluationSummary(**report.summary(), report_key=key, report_version=put["VersionId"],
                                dataset_key=DATASET_KEY, dataset_version=dataset["VersionId"], shards=1,
                                baseline="live")
    world.ledger.receive(release_id, "uploaded", service=SERVICE, commit="c0ffee0",
                         artifact={"bucket": BUCKET, "key": "k", "version_id": "v"})
    world.ledger.record(release_id, "Promoted", "promoted", candidate_version=candidate, live_version=live_before,
                        evaluation=summary)


def live_on_version_2(world, policy: ReleasePolicy, answer) -> ServiceAnswers:
    world.register(policy)
    world.service_function()
    world.publish("support-bot-r-2")
    world.deps.lambda_.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="2")
    promoted_release(world, "support-bot-r-2", candidate="2", live_before="1")
    return world.use("lambda", ServiceAnswers(world.client("lambda"), answer))


# ---------------------------------------------------------------------- policy
@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"on_model_legacy": ["rollback"]}, "on_model_legacy: unknown action.*'rollback'.*allowed here: alert"),
        ({"on_reevaluation_regression": ["reevaluate"]}, "allowed here: alert, rollback"),
        ({"on_drift": ["alert", "alert"]}, "on_drift: each action once"),
        ({"on_drift": ["page"]}, "unknown action.*'page'"),
        ({"reevaluation": {"significance_level": 0.7}}, "significance_level"),
        ({"on_alarm": ["alert"]}, "on_alarm"),
    ],
)
def test_a_bad_monitoring_section_is_refused_naming_the_problem(section, message):
    with pytest.raises(ValidationError, match=message):
        ReleasePolicy.model_validate({"monitoring": section})


def test_the_default_monitoring_policy_only_alerts():
    policy = ReleasePolicy().monitoring
    assert [policy.actions_for(t) for t in ("drift", "reevaluation_regression", "model_legacy")] == [["alert"]] * 3
    assert policy.refuse_legacy_models is False


# ---------------------------------------------------------------------- act
def test_alert_and_rollback_run_in_order_each_recorded(world):
    # Given live on version 2, promoted over version 1, and a policy that alerts then rolls back on drift
    answers = live_on_version_2(world, ReleasePolicy(monitoring=MonitoringPolicy(on_drift=["alert", "rollback"])),
                                lambda v, q: "yes")
    deps = monitor_deps(world)
    # When the drift check acts
    results = act(deps, "drift", SERVICE, "PSI 0.4 on output length", {"psi": 0.4})
    # Then the rolled-back release was sent to the stack's signer for revocation, once
    assert answers.revocations == [{"service": SERVICE, "release_id": "support-bot-r-2"}]
    assert results[1]["revocation"] == "revoked"
    # Then the operations topic is alerted with the reason, filterable by service and trigger
    assert [(r["action"], r["status"]) for r in results] == [("alert", "done"), ("rollback", "done")]
    alert, rolled_back = world.published()
    assert "PSI 0.4 on output length" in alert["Message"] and '"psi": 0.4' in alert["Message"]
    assert alert["MessageAttributes"]["service"]["Value"] == SERVICE
    assert alert["MessageAttributes"]["trigger"]["Value"] == "drift"
    # And live is back on version 1 through the manual rollback's path (its release recorded RolledBack)
    assert world.alias() == ("1", {})
    assert "serves version 1 again" in rolled_back["Message"]
    record = world.ledger.get("support-bot-r-2")
    assert record["status"] == "RolledBack" and record["history"][-1]["actor"] == "modelgate-monitor (drift)"
    assert record["error"] == "MonitorRollback"
    assert record["reason"] == "monitoring policy rollback by modelgate-monitor (drift): PSI 0.4 on output length"
    # And the journal holds both actions, newest first
    events = Journal(world.ledger.table).events(SERVICE, kind="action")
    assert [e["details"]["action"] for e in events] == ["rollback", "alert"]
    assert events[0]["details"]["to_version"] == "1"


def test_a_refused_or_failed_action_is_recorded_and_the_next_still_runs(world):
    # Given a first release live (nothing to roll back to) and a policy that rolls back, then alerts
    world.register(ReleasePolicy(monitoring=MonitoringPolicy(on_drift=["rollback", "reevaluate", "alert"])))
    world.service_function(live_serves_a_release=False)
    world.publish("support-bot-r-2")
    world.deps.lambda_.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="2")
    world.ledger.receive("support-bot-r-2", "uploaded", service=SERVICE)
    world.ledger.record("support-bot-r-2", "Promoted", "promoted", candidate_version="2", live_version="1")
    service = world.use("lambda", ServiceAnswers(world.client("lambda"), lambda v, q: "yes"))
    # When drift is found
    results = act(monitor_deps(world), "drift", SERVICE, "drifted", {})
    # Then the rollback is refused with the reason, the re-evaluation is requested asynchronously, the alert sent
    assert [(r["action"], r["status"]) for r in results] == [("rollback", "refused"), ("reevaluate", "done"),
                                                              ("alert", "done")]
    assert "first release" in results[0]["detail"]
    [invoke] = service.async_invokes
    assert invoke["FunctionName"] == MONITOR_FUNCTION
    assert invoke["Payload"] == {"task": "reevaluate", "service": SERVICE, "requested_by": "drift", "reason": "drifted"}
    assert world.alias() == ("2", {})


def test_act_refuses_an_unknown_trigger(world):
    with pytest.raises(ValueError, match="unknown monitoring trigger 'latency'"):
        act(monitor_deps(world), "latency", SERVICE, "x", {})  # type: ignore[arg-type]


# ---------------------------------------------------------------------- judging a re-evaluation
def _report(then: list[float], now: list[float]):
    results = [CaseResult(side="live", case_id=f"c{i}", score=s, latency_ms=1.0) for i, s in enumerate(then)]
    results += [CaseResult(side="candidate", case_id=f"c{i}", score=s, latency_ms=1.0) for i, s in enumerate(now)]
    return build_report(results).comparison


def test_judge_needs_significance_direction_and_size():
    policy = ReevaluationPolicy()
    # 8 of 12 cases now wrong, none better: exact McNemar p = 2 / 2^8
    verdict, why = reevaluation.judge(_report([1.0] * 12, [0.0] * 8 + [1.0] * 4), policy)
    assert verdict == "regression" and "8 worse, 0 better" in why and "p = 0.00781" in why
    # 2 worse: not significant
    assert reevaluation.judge(_report([1.0] * 12, [0.0] * 2 + [1.0] * 10), policy)[0] == "no_regression"
    # significant but within the allowed drop
    assert reevaluation.judge(_report([1.0] * 12, [0.0] * 8 + [1.0] * 4),
                              ReevaluationPolicy(max_accuracy_drop=0.7))[0] == "no_regression"
    # better now is never a regression
    assert reevaluation.judge(_report([0.0] * 12, [1.0] * 12), policy)[0] == "no_regression"
    # too few paired cases is insufficient, not "no regression"
    assert reevaluation.judge(_report([1.0] * 5, [0.0] * 5), policy)[0] == "insufficient"
    assert reevaluation.judge(None, policy)[0] == "insufficient"


# ---------------------------------------------------------------------- re-evaluating live
def test_a_provider_side_change_is_a_paired_regression_and_rolls_back_per_policy(world):
    # Given live version 2 promoted with every case right, whose provider now answers 9 of 12 wrong
    policy = ReleasePolicy(monitoring=MonitoringPolicy(on_reevaluation_regression=["alert", "rollback"]))
    live_on_version_2(world, policy, lambda version, q: "no" if int(q[1:]) < 9 else "yes")
    # When the scheduled re-evaluation runs
    entry = reevaluation.reevaluate_live(monitor_deps(world), SERVICE)
    # Then it is a regression, case by case against the evaluation that promoted version 2
    assert entry["details"]["verdict"] == "regression"
    assert entry["details"]["promoted_by"] == "support-bot-r-2"
    assert entry["details"]["paired_test"]["b"] == 9 and entry["details"]["paired_test"]["c"] == 0
    assert entry["details"]["sides"]["now"]["accuracy"] == pytest.approx(0.25)
    # And the report is stored (JSON and HTML) with the cases that got worse
    html = world.client("s3").get_object(Bucket=BUCKET, Key=entry["details"]["report_html_key"])["Body"].read().decode()
    assert "regression" in html and "case-00" in html
    # And the policy's actions ran: alerted, then rolled back to version 1
    assert [(a["action"], a["status"]) for a in entry["actions"]] == [("alert", "done"), ("rollback", "done")]
    assert world.alias() == ("1", {})


def test_an_unchanged_provider_is_no_regression_and_nothing_acts(world):
    live_on_version_2(world, ReleasePolicy(monitoring=MonitoringPolicy(on_reevaluation_regression=["rollback"])),
                      lambda version, q: "yes")
    entry = reevaluation.reevaluate_live(monitor_deps(world), SERVICE)
    assert entry["details"]["verdict"] == "no_regression" and "actions" not in entry
    assert world.alias() == ("2", {})
    assert world.published() == []


def test_no_reevaluation_while_a_release_is_in_flight_or_without_a_promoting_evaluation(world):
    live_on_version_2(world, ReleasePolicy(), lambda version, q: "no")
    deps = monitor_deps(world)
    # a release holds the service's lock: live is moving
    world.ledger.acquire_lock(SERVICE, "support-bot-r-3", 3600)
    entry = reevaluation.reevaluate_live(deps, SERVICE)
    assert entry["details"]["verdict"] == "skipped" and "support-bot-r-3 is in flight" in entry["summary"]
    world.ledger.release_lock(SERVICE, "support-bot-r-3")
    # live serves a version no promoted release put there (the stack's first version)
    world.deps.lambda_.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="1")
    entry = reevaluation.reevaluate_live(deps, SERVICE)
    assert entry["details"]["verdict"] == "insufficient" and "version 1" in entry["summary"]


# ---------------------------------------------------------------------- model lifecycle
class FakeBedrock:
    """GetFoundationModel over a table of lifecycle states (moto has no GetFoundationModel)."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states, self.asked = states, []

    def get_foundation_model(self, modelIdentifier: str) -> dict:
        from botocore.exceptions import ClientError

        self.asked.append(modelIdentifier)
        if modelIdentifier not in self.states:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "GetFoundationModel")
        return {"modelDetails": {"modelId": modelIdentifier, "modelLifecycle": {"status": self.states[modelIdentifier]}}}


HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def bedrock_manifest(model_id: str) -> Manifest:
    return Manifest.model_validate({
        "service": SERVICE, "model": {"provider": "bedrock", "model_id": model_id},
        "prompts": [{"name": "system", "file": "prompts/system.txt", "sha256": "0" * 64}],
        "source": {"commit": "abc1234", "branch": "main"},
    })


def test_lifecycle_status_reads_the_foundation_model_behind_an_inference_profile():
    bedrock = FakeBedrock({HAIKU: "LEGACY"})
    assert foundation_model_id(f"us.{HAIKU}") == HAIKU
    assert lifecycle_status(bedrock, f"global.{HAIKU}") == "LEGACY" and bedrock.asked == [HAIKU]
    with pytest.raises(ConfigurationError, match="Bedrock knows no foundation model 'anthropic.nope-v1:0'"):
        lifecycle_status(bedrock, "anthropic.nope-v1:0")


def test_validate_refuses_a_legacy_model_only_when_the_policy_says_so():
    bedrock = FakeBedrock({HAIKU: "LEGACY", "anthropic.claude-3-5-haiku-20241022-v1:0": "ACTIVE"})
    refusing = ReleasePolicy(monitoring=MonitoringPolicy(refuse_legacy_models=True))
    with pytest.raises(ManifestInvalid, match="is LEGACY on Bedrock.*refuse_legacy_models"):
        refuse_legacy(bedrock, bedrock_manifest(HAIKU), refusing, "releases/x/model-config.json")
    refuse_legacy(bedrock, bedrock_manifest("anthropic.claude-3-5-haiku-20241022-v1:0"), refusing, "k")
    refuse_legacy(bedrock, bedrock_manifest(HAIKU), ReleasePolicy(), "k")  # not refused by default


def test_the_watch_alerts_when_live_pins_a_legacy_model(world):
    # Given live version 1 pinning a release whose manifest pins a Bedrock model now LEGACY
    world.register()
    world.service_function()
    manifest = bedrock_manifest(HAIKU).model_dump_json(exclude_none=True).encode()
    put = world.client("s3").put_object(Bucket=BUCKET, Key=f"releases/{SERVICE}/an-earlier-release/model-config.json",
                                        Body=manifest)
    env = world.environment("1")
    env["MODEL_CONFIG_VERSION"] = put["VersionId"]
    world.client("lambda").update_function_configuration(FunctionName=FUNCTION, Environment={"Variables": env})
    version = world.client("lambda").publish_version(FunctionName=FUNCTION, Description="pinned")["Version"]
    world.deps.lambda_.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=version)
    world.use("bedrock", FakeBedrock({HAIKU: "LEGACY"}))
    # When the scheduled watch runs
    entry = lifecycle.watch(monitor_deps(world), SERVICE)
    # Then the journal says so and the operations topic is alerted
    assert entry["details"]["status"] == "LEGACY" and entry["details"]["model_id"] == HAIKU
    assert [(a["action"], a["status"]) for a in entry["actions"]] == [("alert", "done")]
    [alert] = world.published()
    assert "LEGACY" in alert["Message"] and alert["MessageAttributes"]["trigger"]["Value"] == "model_legacy"
