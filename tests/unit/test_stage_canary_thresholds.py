"""Canary alarm thresholds relative to live's measured latency: from live's CloudWatch
Duration, else the evaluation's live side, else per policy (fail / the candidate's own
evaluated latency / the floor); the threshold and its inputs in the ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cfn_flip import load_yaml
from modelgate_emulator import cloudwatch
from pydantic import ValidationError

from modelgate.adapters.alarms import live_latency
from modelgate.adapters.metrics import LAMBDA_NAMESPACE
from modelgate.contract import EvaluationSummary
from modelgate.errors import NotEnoughEvidence
from modelgate.pipeline.canary import shift_traffic
from modelgate.policy import CanaryAlarmSpec, ReleasePolicy

RELEASE = "support-bot-abc1234def0-0123456789"
FUNCTION = "test-svc-support-bot"
LATENCY_ALARM = f"test-canary-{RELEASE}-latency"
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(autouse=True)
def percentiles(world):
    """moto's GetMetricData computes no percentile; the embedded AWS's CloudWatch patch does,
    from the raw datapoints as AWS does (a p95 alarm reads live's p95)."""
    uninstall = cloudwatch.install()
    yield
    uninstall()


def latency_spec(statistic: str = "p95", **relative) -> CanaryAlarmSpec:
    return CanaryAlarmSpec(
        name="latency", metric="Duration", statistic=statistic,
        relative_to_live={"factor": 1.5, "floor_ms": 100, "min_samples": 20, **relative},
        period_seconds=60, evaluation_periods=2,
    )


def policy(*specs: CanaryAlarmSpec) -> ReleasePolicy:
    return ReleasePolicy(canary_alarms=list(specs))


def evaluation(*, live: dict | None = None, candidate: dict | None = None) -> EvaluationSummary:
    """An evaluation summary whose sides measured these latencies (n calls, errors, pNN)."""
    sides = {}
    for name, side in (("live", live), ("candidate", candidate)):
        if side is not None:
            sides[name] = {"n": side.get("n", 40), "errors": side.get("errors", 0),
                           "latency_p50_ms": side.get("p50"), "latency_p95_ms": side.get("p95"),
                           "latency_p99_ms": side.get("p99")}
            if "latency_samples" in side:  # a batch evaluation: latency from its on-demand sample
                sides[name]["latency_samples"] = side["latency_samples"]
    return EvaluationSummary(n_cases=40, sides=sides, report_key="reports/r.json", dataset_key="d", dataset_version="v",
                             shards=1, baseline="live" if live else "none (first release)")


def live_traffic(world, durations_ms: list[float], *, minutes_ago: int = 5) -> None:
    """What Lambda reported for calls through the live alias (all on live before the canary)."""
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    dimensions = [{"Name": "FunctionName", "Value": FUNCTION}, {"Name": "Resource", "Value": f"{FUNCTION}:live"}]
    for start in range(0, len(durations_ms), 20):
        world.deps.cloudwatch.put_metric_data(Namespace=LAMBDA_NAMESPACE, MetricData=[
            {"MetricName": "Duration", "Dimensions": dimensions, "Timestamp": at, "Value": v, "Unit": "Milliseconds"}
            for v in durations_ms[start:start + 20]
        ])


def first_step(world, release_policy: ReleasePolicy, **fields):
    """A candidate (version 2) beside live (version 1), about to take its first step (its lease held)."""
    world.service_function()
    world.publish(RELEASE)
    generation = world.ledger.acquire_lock("support-bot", RELEASE, 3600)
    ctx = world.context(RELEASE, live_version="1", candidate_version="2", policy=release_policy,
                        lease_generation=generation, **fields)
    return shift_traffic(world.deps, ctx)


def alarm(world, name: str = LATENCY_ALARM) -> dict:
    [found] = world.deps.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return found


def thresholds(world) -> dict[str, dict]:
    return {t["alarm"]: t for t in world.ledger.get(RELEASE)["canary_thresholds"]}


# ---------------------------------------------------------------------- where live's latency comes from
def test_the_threshold_is_a_factor_of_lives_cloudwatch_latency(world):
    # Given live served 40 calls through its alias in the last hour, averaging 400 ms
    live_traffic(world, [300.0] * 20 + [500.0] * 20)
    # When the canary starts with an alarm at 1.5 x live's Average Duration (floor 100 ms)
    first_step(world, policy(latency_spec("Average")), evaluation=evaluation(live={"p95": 50.0}))
    # Then the alarm watches the candidate's Average Duration above 600 ms
    created = alarm(world)
    assert (created["Statistic"], created["Threshold"], created["MetricName"]) == ("Average", 600.0, "Duration")
    assert {d["Name"]: d["Value"] for d in created["Dimensions"]}["ExecutedVersion"] == "2"
    # And the ledger keeps the threshold with its inputs: CloudWatch won over the evaluation
    kept = thresholds(world)["latency"]
    assert (kept["threshold"], kept["basis"], kept["factor"], kept["floor_ms"]) == (600.0, "live", 1.5, 100)
    assert (kept["live"]["source"], kept["live"]["value_ms"], kept["live"]["samples"]) == ("cloudwatch", 400.0, 40)
    assert "max(floor 100 ms, 1.5 x live's Average 400.0 ms from cloudwatch" in world.ledger.get(RELEASE)["history"][-1][
        "detail"]


def test_a_percentile_alarm_is_relative_to_lives_percentile_in_cloudwatch(world):
    # Given live's last hour: 100 calls of 1..100 ms (p95 = 95 ms)
    live_traffic(world, [float(v) for v in range(1, 101)])
    # When the canary starts with a p95 alarm
    first_step(world, policy(latency_spec("p95")), evaluation=evaluation(live={"p95": 5000.0}))
    # Then the threshold is 1.5 x live's p95 from CloudWatch (the evaluation's figure not used)
    assert alarm(world)["Threshold"] == 142.5
    kept = thresholds(world)["latency"]["live"]
    assert (kept["source"], kept["value_ms"], kept["samples"]) == ("cloudwatch", 95.0, 100)


def test_too_few_live_calls_in_cloudwatch_fall_back_to_the_evaluations_live_latency(world):
    # Given only 5 live calls in CloudWatch, and an evaluation that measured live's p95 at 800 ms
    live_traffic(world, [100.0] * 5)
    # When the canary starts with a p95 alarm (live's p95 over the last hour can't be read from 5 calls)
    first_step(world, policy(latency_spec("p95")), evaluation=evaluation(live={"p95": 800.0}, candidate={"p95": 5.0}))
    # Then the alarm is the candidate's p95 (an extended statistic) above 1.5 x 800 ms
    created = alarm(world)
    assert (created["ExtendedStatistic"], created["Threshold"]) == ("p95", 1200.0)
    assert "Statistic" not in created
    kept = thresholds(world)["latency"]
    assert (kept["basis"], kept["live"]["source"], kept["live"]["samples"]) == ("live", "evaluation", 40)


def test_a_batch_evaluation_counts_only_its_timed_sample_as_lives_latency_evidence(world):
    # Given 5 live calls in CloudWatch, and a batch evaluation of 400 cases whose on-demand sample
    # timed 8 of live's calls (fewer than the alarm's min_samples of 20)
    live_traffic(world, [100.0] * 5)
    batch = evaluation(live={"n": 400, "p95": 800.0, "latency_samples": 8}, candidate={"n": 400, "p95": 5.0})
    # When the canary starts, then it refuses: 8 timed calls are not the 400 cases' evidence
    with pytest.raises(NotEnoughEvidence, match="fewer than 20 measured calls"):
        first_step(world, policy(latency_spec("p95")), evaluation=batch)


def test_a_fast_live_gets_the_floor_not_a_hair_trigger(world):
    # Given live's evaluated p95 of 20 ms (1.5 x that would fire on jitter)
    first_step(world, policy(latency_spec(floor_ms=250)), evaluation=evaluation(live={"p95": 20.0}))
    # Then the floor is the threshold, and the ledger says the floor decided
    assert alarm(world)["Threshold"] == 250.0
    assert thresholds(world)["latency"]["basis"] == "floor"


# ---------------------------------------------------------------------- live has no data
def test_no_live_latency_at_all_ends_the_release_before_traffic_moves(world):
    # Given live without traffic and without a live side in the evaluation (a first release)
    # When the canary starts with the default policy (without_live_data: fail)
    with pytest.raises(NotEnoughEvidence, match=r"alarm latency: .*fewer than 20 measured calls .*cloudwatch: no "
                                                r"invocations of test-svc-support-bot:live.*policy says fail"):
        first_step(world, policy(latency_spec()), evaluation=evaluation(candidate={"p95": 30.0}))
    # Then no alarm exists and the alias never moved
    assert world.alarm_names() == []
    assert world.alias() == ("1", {})


def test_without_live_data_candidate_uses_the_candidates_evaluated_latency(world):
    # Given no live latency anywhere, and the candidate's evaluated p95 of 900 ms
    spec = latency_spec(without_live_data="candidate")
    first_step(world, policy(spec), evaluation=evaluation(candidate={"p95": 900.0}))
    # Then the threshold is 1.5 x the candidate's own, and the ledger says why
    assert alarm(world)["Threshold"] == 1350.0
    kept = thresholds(world)["latency"]
    assert (kept["basis"], kept["live"]["source"]) == ("candidate_without_live_data", "candidate_evaluation")
    assert "so the candidate's own (without_live_data: candidate)" in kept["explanation"]


def test_without_live_data_candidate_still_needs_a_measured_candidate(world):
    # Given no live latency, and a candidate that failed most evaluation calls
    spec = latency_spec(without_live_data="candidate")
    with pytest.raises(NotEnoughEvidence, match="has fewer too .*p95 of 4 successful calls of candidate"):
        first_step(world, policy(spec), evaluation=evaluation(candidate={"p95": 900.0, "errors": 36}))
    assert world.alarm_names() == []


def test_without_live_data_floor_arms_the_floor_alone_and_says_so(world):
    spec = latency_spec(without_live_data="floor", floor_ms=3000)
    first_step(world, policy(spec), evaluation=evaluation(candidate={"p95": 30.0}))
    assert alarm(world)["Threshold"] == 3000.0
    kept = thresholds(world)["latency"]
    assert kept["basis"] == "floor_without_live_data" and kept["live"] is None
    assert "the floor alone, because live's latency has fewer than 20 measured calls" in kept["explanation"]


def test_an_average_alarm_cannot_fall_back_to_the_evaluation_which_measures_percentiles(world):
    # Given live measured only by the evaluation (p50/p95/p99), and an Average alarm
    with pytest.raises(NotEnoughEvidence, match="the evaluation measures p50, p95 and p99, not Average"):
        first_step(world, policy(latency_spec("Average")), evaluation=evaluation(live={"p95": 800.0}))


def test_fixed_thresholds_are_kept_as_given_and_recorded(world):
    errors = CanaryAlarmSpec(name="errors", metric="Errors", statistic="Sum", threshold=2)
    first_step(world, policy(errors))
    assert alarm(world, f"test-canary-{RELEASE}-errors")["Threshold"] == 2.0
    assert thresholds(world)["errors"]["basis"] == "fixed"


# ---------------------------------------------------------------------- the adapter
def test_live_latency_reads_only_the_window_before_the_canary(world):
    # Given 30 calls 10 minutes ago and 30 slower ones 2 hours ago
    live_traffic(world, [200.0] * 30, minutes_ago=10)
    live_traffic(world, [900.0] * 30, minutes_ago=120)
    # When live's Average over the last hour is read
    measured = live_latency(world.deps.cloudwatch, function_name=FUNCTION, alias="live", statistic="Average",
                            window_seconds=3600)
    # Then only the recent calls count
    assert (measured.value_ms, measured.samples, measured.source) == (200.0, 30, "cloudwatch")


@pytest.mark.parametrize("window", [0, 90])
def test_live_latency_refuses_a_window_of_partial_minutes(world, window):
    with pytest.raises(ValueError, match="whole minutes"):
        live_latency(world.deps.cloudwatch, function_name=FUNCTION, alias="live", statistic="p95",
                     window_seconds=window)


# ---------------------------------------------------------------------- the policy
@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"metric": "Duration", "statistic": "p95"}, "exactly one of threshold"),
        ({"metric": "Duration", "statistic": "p95", "threshold": 1, "relative_to_live": {"factor": 2, "floor_ms": 1}},
         "exactly one of threshold"),
        ({"metric": "Errors", "statistic": "Average", "relative_to_live": {"factor": 2, "floor_ms": 1}},
         "relative_to_live is for Duration"),
        ({"metric": "Duration", "statistic": "Sum", "relative_to_live": {"factor": 2, "floor_ms": 1}},
         "Sum of Duration grows with traffic"),
        ({"metric": "Duration", "statistic": "p101", "threshold": 1}, "statistic 'p101' is neither"),
        ({"metric": "Duration", "statistic": "Median", "threshold": 1}, "statistic 'Median' is neither"),
        ({"metric": "Duration", "statistic": "p95", "relative_to_live": {"factor": 0.5, "floor_ms": 1}},
         "factor\n  Input should be greater than or equal to 1"),
        ({"metric": "Duration", "statistic": "p95",
          "relative_to_live": {"factor": 2, "floor_ms": 1, "window_seconds": 3630}}, "whole number of minutes"),
        ({"metric": "Duration", "statistic": "p95",
          "relative_to_live": {"factor": 2, "floor_ms": 1, "without_live_data": "ignore"}}, "without_live_data"),
    ],
)
def test_a_bad_alarm_spec_is_refused_naming_the_problem(spec, problem):
    with pytest.raises(ValidationError, match=problem):
        CanaryAlarmSpec(name="latency", **spec)


def test_the_sample_registrations_latency_alarm_is_relative_to_live():
    # Given the sample service's registration in template.yaml (its !Sub names filled in)
    value = load_yaml(TEMPLATE.read_text())["Resources"]["SampleServiceRegistration"]["Properties"]["Value"]
    body = value["Fn::Sub"][0].replace("${ApprovalMode}", "manual").replace("${SampleServiceFunction}", FUNCTION)
    body = body.replace("${SampleServiceErrorsAlarm}", "e").replace("${SampleServiceLatencyAlarm}", "l")
    # Then its latency alarm is relative to live, with the candidate's latency when live has none
    specs = {s.name: s for s in ReleasePolicy.model_validate(json.loads(body)["policy"]).canary_alarms}
    assert specs["latency"].threshold is None and specs["latency"].relative_to_live is not None
    assert specs["latency"].relative_to_live.without_live_data == "candidate"
