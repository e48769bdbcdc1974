"""The canary judge: its statistics against scipy, its verdicts, its CloudWatch adapter (moto)."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from modelgate.canary_judge import (
    MWU_EXACT_LIMIT,
    JudgePolicy,
    SideSample,
    fisher_exact_greater,
    judge_canary,
    mann_whitney_greater,
)
from modelgate.stats import P_VALUE_FLOOR

scipy_stats = pytest.importorskip("scipy.stats")

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
FN, ALIAS, CANDIDATE, STABLE = "svc-fn", "live", "7", "6"


def side(invocations: int, errors: int = 0, latencies: list[float] | tuple[float, ...] = ()) -> SideSample:
    return SideSample(invocations=invocations, errors=errors, latencies_ms=tuple(latencies))


# --------------------------------------------------------------------------- Fisher


@pytest.mark.parametrize(
    ("ea", "na", "eb", "nb"),
    [
        (12, 140, 3, 1260),  # the example: a clear regression
        (0, 20, 0, 180),  # no errors at all
        (1, 20, 0, 180),  # one error on a small canary
        (3, 20, 0, 180),
        (5, 5, 0, 100),  # every canary call failed
        (0, 50, 10, 450),  # candidate better
        (2, 200, 20, 1800),  # same rate
        (9, 100, 90, 900),
        (1, 1, 0, 1),
        (0, 1, 1, 1),
        (40, 10_000, 200, 90_000),
        (5_000, 1_000_000, 40_000, 9_000_000),  # millions of calls: log space, O(sd) terms
        (120, 1_000, 900, 9_000),
        (3, 1_000_000, 0, 9_000_000),
    ],
)
def test_fisher_matches_scipy_one_sided_greater(ea: int, na: int, eb: int, nb: int) -> None:
    # Given a 2x2 table of candidate and stable errors
    # When tested one-sided ("candidate's error rate is higher")
    ours = fisher_exact_greater(ea, na, eb, nb)
    # Then the p-value is scipy's fisher_exact(alternative="greater")
    oracle = scipy_stats.fisher_exact([[ea, na - ea], [eb, nb - eb]], alternative="greater").pvalue
    assert ours == pytest.approx(max(oracle, P_VALUE_FLOOR), rel=1e-7, abs=1e-15)


def test_fisher_random_tables_match_scipy() -> None:
    # Given 300 seeded random tables of canary-like sizes
    rng = random.Random(4)
    for _ in range(300):
        na, nb = rng.randint(1, 300), rng.randint(1, 3_000)
        ea, eb = rng.randint(0, min(na, 30)), rng.randint(0, min(nb, 60))
        # Then every p-value agrees with scipy
        oracle = scipy_stats.fisher_exact([[ea, na - ea], [eb, nb - eb]], alternative="greater").pvalue
        assert fisher_exact_greater(ea, na, eb, nb) == pytest.approx(max(oracle, P_VALUE_FLOOR), rel=1e-7, abs=1e-15), (ea, na, eb, nb)


def test_fisher_extreme_regression_is_floored_not_zero() -> None:
    # Given every one of 2,000 canary calls failing against none of 20,000 stable calls
    p = fisher_exact_greater(2_000, 2_000, 0, 20_000)
    # Then p is the floor (storable in the ledger), not 0
    assert p == P_VALUE_FLOOR


def test_fisher_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="more errors than calls"):
        fisher_exact_greater(3, 2, 0, 10)
    with pytest.raises(ValueError, match="negative"):
        fisher_exact_greater(-1, 2, 0, 10)


# --------------------------------------------------------------------------- Mann-Whitney


def test_mann_whitney_asymptotic_matches_scipy_with_ties() -> None:
    # Given seeded samples of rounded latencies (so with many ties), candidate sometimes slower
    rng = random.Random(7)
    for trial in range(100):
        n1, n2 = rng.randint(1, 40), rng.randint(2, 60)
        shift = rng.choice([0, 5, 20])
        x = [round(rng.gauss(100 + shift, 15)) for _ in range(n1)]
        y = [round(rng.gauss(100, 15)) for _ in range(n2)]
        # When tested one-sided with the normal approximation
        ours = mann_whitney_greater(x, y, method="asymptotic")
        oracle = scipy_stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic", use_continuity=True)
        # Then U and p are scipy's (tie correction and continuity correction included)
        assert ours.u == oracle.statistic, trial
        assert ours.p_value == pytest.approx(max(oracle.pvalue, P_VALUE_FLOOR), rel=1e-9, abs=1e-15), trial
        assert ours.method == "asymptotic"


def test_mann_whitney_exact_matches_scipy_without_ties() -> None:
    # Given seeded tie-free samples up to 12 x 15
    rng = random.Random(11)
    for trial in range(60):
        n1, n2 = rng.randint(1, 12), rng.randint(1, 15)
        values = rng.sample(range(10_000), n1 + n2)
        x, y = values[:n1], values[n1:]
        # When tested exactly
        ours = mann_whitney_greater(x, y, method="exact")
        oracle = scipy_stats.mannwhitneyu(x, y, alternative="greater", method="exact")
        # Then U and p are scipy's exact ones
        assert ours.u == oracle.statistic, trial
        assert ours.p_value == pytest.approx(oracle.pvalue, rel=1e-12), trial


def test_mann_whitney_exact_smallest_p_is_one_over_the_orderings() -> None:
    # Given 4 per-minute values a side, every candidate value slower than every stable one
    test = mann_whitney_greater([200, 210, 220, 230], [100, 110, 120, 130])
    # Then p = 1 / C(8, 4): the only ordering at least this extreme, out of 70
    assert test.method == "exact"
    assert test.p_value == pytest.approx(1 / 70)
    assert test.u == 16


def test_mann_whitney_auto_picks_asymptotic_for_ties_or_large_samples() -> None:
    # Given ties / Then the normal approximation (the exact table assumes none)
    assert mann_whitney_greater([1, 2, 2], [2, 3]).method == "asymptotic"
    # Given more pairs than the exact limit / Then the normal approximation
    n = math.isqrt(MWU_EXACT_LIMIT) + 1
    assert mann_whitney_greater([float(i) for i in range(n)], [i + 0.5 for i in range(n)]).method == "asymptotic"


def test_mann_whitney_exact_refuses_ties_and_empty_sides() -> None:
    with pytest.raises(ValueError, match="no ties"):
        mann_whitney_greater([1, 2], [2, 3], method="exact")
    with pytest.raises(ValueError, match="at least one value"):
        mann_whitney_greater([], [1.0])


def test_mann_whitney_all_tied_is_no_evidence() -> None:
    # Given identical latencies everywhere / Then there is nothing to reject: p = 1
    assert mann_whitney_greater([100, 100], [100, 100, 100]).p_value == 1.0


# --------------------------------------------------------------------------- verdicts


def test_no_data_is_not_enough_evidence_never_a_pass() -> None:
    # Given a window in which neither version served anything
    verdict = judge_canary(side(0), side(0), JudgePolicy())
    # Then not enough evidence, and by default the bake is extended
    assert verdict.verdict == "not_enough_evidence"
    assert verdict.action == "wait"
    assert not verdict.passed
    assert "no invocations on candidate and stable" in verdict.message


def test_candidate_without_traffic_is_not_enough_evidence() -> None:
    verdict = judge_canary(side(0), side(1_000, 3), JudgePolicy())
    assert verdict.verdict == "not_enough_evidence"
    assert "no invocations on candidate" in verdict.message


def test_small_clean_canary_is_not_enough_evidence() -> None:
    # Given 5 clean canary calls, under the policy's 20 a side
    verdict = judge_canary(side(5), side(45), JudgePolicy(min_invocations=20))
    # Then no pass: too little to call it healthy
    assert verdict.verdict == "not_enough_evidence"
    assert "fewer than 20 invocations" in verdict.message


def test_clear_regression_fails_and_names_the_numbers() -> None:
    # Given the candidate failing 12 of 140 calls while stable fails 3 of 1,260
    verdict = judge_canary(side(140, 12), side(1_260, 3), JudgePolicy())
    # Then the canary fails and is rolled back
    assert verdict.verdict == "fail"
    assert verdict.action == "rollback"
    # And the message carries the counts, the rates, the increase, the allowance and p
    for text in ("12/140", "(8.6%)", "3/1260", "(0.2%)", "+8.3 pts", "allowed +1.0 pts", "p=2.2e-10"):
        assert text in verdict.message, text
    (check,) = verdict.checks
    assert check.p_value == pytest.approx(2.249e-10, rel=1e-3)
    assert check.increase == pytest.approx(12 / 140 - 3 / 1260)


def test_blatant_regression_fails_even_below_the_minimum_sample() -> None:
    # Given 5 of 5 canary calls failing (under the 20-call minimum) and 0 of 100 stable
    verdict = judge_canary(side(5, 5), side(100, 0), JudgePolicy(min_invocations=20))
    # Then it fails: the minimum sample size gates a pass, never a fail
    assert verdict.verdict == "fail"


def test_no_regression_passes() -> None:
    # Given both versions failing 1% of plenty of calls
    verdict = judge_canary(side(200, 2), side(1_800, 20), JudgePolicy())
    # Then the canary passes and the rollout proceeds
    assert verdict.verdict == "pass"
    assert verdict.action == "proceed"
    assert verdict.passed


def test_increase_beyond_the_margin_but_within_noise_is_not_enough_evidence() -> None:
    # Given 1 error in 20 canary calls (5%) against none in 180: +5 pts, but p ~ 0.1
    verdict = judge_canary(side(20, 1), side(180, 0), JudgePolicy())
    # Then neither pass (it may be 5 pts worse) nor fail (it may be noise)
    assert verdict.verdict == "not_enough_evidence"
    assert "within noise" in verdict.message


def test_significant_increase_within_the_margin_passes() -> None:
    # Given 0.6% vs 0.22% errors on many calls: significant, but +0.38 pt < +1 pt allowed
    verdict = judge_canary(side(10_000, 60), side(90_000, 200), JudgePolicy())
    (check,) = verdict.checks
    assert check.p_value is not None and check.p_value < 0.001
    # Then the policy allows it
    assert verdict.verdict == "pass"


def test_healthy_canaries_are_rarely_rolled_back() -> None:
    # Given 300 seeded healthy canaries: both versions fail 2% of calls, 10% canary weight,
    # and a policy allowing no increase at all (so only the significance test protects)
    rng = random.Random(20240601)
    policy = JudgePolicy(max_error_rate_increase=0.0)

    def errors(n: int) -> int:
        return sum(rng.random() < 0.02 for _ in range(n))

    # When each is judged
    fails = sum(
        judge_canary(side(200, errors(200)), side(1_800, errors(1_800)), policy).verdict == "fail"
        for _ in range(300)
    )
    # Then the false-rollback rate stays within alpha (Fisher is conservative)
    assert fails / 300 <= 0.05


@pytest.mark.parametrize(
    ("policy", "used", "action"),
    [
        (JudgePolicy(on_not_enough_evidence="wait", max_extensions=2), 0, "wait"),
        (JudgePolicy(on_not_enough_evidence="wait", max_extensions=2), 1, "wait"),
        (JudgePolicy(on_not_enough_evidence="wait", max_extensions=2), 2, "rollback"),
        (JudgePolicy(on_not_enough_evidence="synthetic", max_extensions=1), 0, "synthetic"),
        (JudgePolicy(on_not_enough_evidence="synthetic", max_extensions=1), 1, "rollback"),
        (JudgePolicy(on_not_enough_evidence="fail"), 0, "rollback"),
        (JudgePolicy(max_extensions=0), 0, "rollback"),
    ],
)
def test_not_enough_evidence_action_follows_the_policy(policy: JudgePolicy, used: int, action: str) -> None:
    # Given a canary with no traffic, after `used` extensions
    verdict = judge_canary(side(0), side(0), policy, extensions_used=used)
    # Then the policy's action, until the extensions run out
    assert verdict.verdict == "not_enough_evidence"
    assert verdict.action == action
    assert verdict.extensions_used == used


def test_latency_is_not_judged_unless_the_policy_sets_a_limit() -> None:
    # Given the default policy (latency limits off, as in the evaluation gate)
    verdict = judge_canary(side(200, 0, [900] * 10), side(1_800, 0, [100] * 10), JudgePolicy())
    # Then only errors are judged, at the full alpha
    assert [c.metric for c in verdict.checks] == ["errors"]
    assert verdict.checks[0].alpha == 0.05
    assert verdict.verdict == "pass"


LATENCY_POLICY = JudgePolicy(max_latency_increase_ratio=0.20)


def test_clear_latency_regression_fails() -> None:
    # Given 15 per-minute averages: the candidate ~50% slower than stable
    rng = random.Random(3)
    slow = [150 + rng.uniform(-10, 10) for _ in range(15)]
    fast = [100 + rng.uniform(-10, 10) for _ in range(15)]
    verdict = judge_canary(side(300, 0, slow), side(2_700, 0, fast), LATENCY_POLICY)
    # Then the canary fails on latency, and alpha was split between the two checks
    errors, latency = verdict.checks
    assert errors.outcome == "pass"
    assert latency.outcome == "fail"
    assert latency.alpha == errors.alpha == 0.025
    assert verdict.verdict == "fail" and verdict.action == "rollback"
    assert "Mann-Whitney" in latency.method
    assert "allowed +20.0%" in latency.message
    assert latency.relative_increase is not None and latency.relative_increase > 0.3


def test_similar_latency_passes() -> None:
    rng = random.Random(5)
    a = [100 + rng.uniform(-10, 10) for _ in range(15)]
    b = [100 + rng.uniform(-10, 10) for _ in range(15)]
    verdict = judge_canary(side(300, 0, a), side(2_700, 0, b), LATENCY_POLICY)
    assert verdict.verdict == "pass"


def test_too_few_latency_values_is_not_enough_evidence() -> None:
    # Given only 3 per-minute values a side, no slowdown / Then no pass on latency
    verdict = judge_canary(side(300, 0, [100, 101, 99]), side(2_700, 0, [100, 102, 98]), LATENCY_POLICY)
    assert verdict.verdict == "not_enough_evidence"
    assert verdict.checks[1].outcome == "not_enough_evidence"


def test_no_latency_values_is_not_enough_evidence() -> None:
    verdict = judge_canary(side(300), side(2_700, 0, [100] * 10), LATENCY_POLICY)
    assert verdict.checks[1].outcome == "not_enough_evidence"
    assert "no values on candidate" in verdict.message


def test_absolute_latency_limit_fails_on_its_own() -> None:
    # Given a +30 ms slowdown (+15%) and a policy allowing +20 ms
    a = [230 + i for i in range(10)]
    b = [200 + i for i in range(10)]
    verdict = judge_canary(side(300, 0, a), side(2_700, 0, b), JudgePolicy(max_latency_increase_ms=20))
    # Then the absolute limit fails it (only the ratio would have passed)
    assert verdict.verdict == "fail"
    assert verdict.checks[1].increase == pytest.approx(30)


def test_error_failure_wins_over_missing_latency_evidence() -> None:
    # Given a clear error regression and no latency data / Then it is a fail, not a wait
    verdict = judge_canary(side(140, 12), side(1_260, 3), LATENCY_POLICY)
    assert verdict.verdict == "fail"


def test_verdict_is_json_for_the_state_machine_and_the_ledger() -> None:
    verdict = judge_canary(side(140, 12), side(1_260, 3), LATENCY_POLICY)
    payload = json.loads(verdict.model_dump_json())
    assert payload["verdict"] == "fail"
    assert payload["checks"][0]["metric"] == "errors"


def test_side_sample_refuses_more_errors_than_invocations() -> None:
    with pytest.raises(ValidationError, match="3 errors out of 2 invocations"):
        SideSample(invocations=2, errors=3)
