"""Paired statistics, checked against independent oracles (numpy, scipy)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats as scipy_stats

from modelgate import stats

# --------------------------------------------------------------------------- percentile


@pytest.mark.parametrize("n", [1, 2, 3, 7, 30, 101])
def test_percentile_matches_numpy_linear_interpolation(n: int) -> None:
    # Given random latencies
    rng = random.Random(n)
    values = [rng.uniform(1, 500) for _ in range(n)]
    # When percentiles are taken / Then they equal numpy's default (linear) method
    for q in (0, 1, 2.5, 25, 50, 90, 95, 97.5, 99, 100):
        assert stats.percentile(values, q) == pytest.approx(
            float(np.percentile(values, q, method="linear"))
        )


def test_percentile_rejects_empty_input_and_bad_q() -> None:
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        stats.percentile([1.0], 101)


@pytest.mark.parametrize("n", [1, 2, 5, 40, 333])
@pytest.mark.parametrize("q", [0, 5, 50, 95, 99, 100])
def test_resampled_percentile_equals_numpy_on_each_resample(n: int, q: float) -> None:
    # Given values with some missing (failed calls have no latency)
    rng = random.Random(n * 1000 + q)
    values = [None if rng.random() < 0.15 else round(rng.uniform(1, 100), 2) for _ in range(n)]
    statistic = stats.resampled_percentile(values, q)
    # When evaluated on resamples / Then it is numpy's percentile of the present values
    for indices in stats.bootstrap_indices(n, 40, seed=n):
        present = [values[i] for i in indices if values[i] is not None]
        got = statistic(indices)
        if not present:
            assert got is None
        else:
            assert got == pytest.approx(float(np.percentile(present, q)))


def test_resampled_mean_skips_missing_values() -> None:
    statistic = stats.resampled_mean([1.0, None, 3.0])
    assert statistic([0, 1, 2]) == pytest.approx(2.0)
    assert statistic([1, 1]) is None
    assert stats.resampled_mean([2.5, 2.5])([0, 0, 1]) == 2.5  # constant: no work per resample


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_indices_are_reproducible_uniform_and_in_range() -> None:
    # Given the same seed twice and another seed
    first = list(stats.bootstrap_indices(50, 200, seed=7))
    again = list(stats.bootstrap_indices(50, 200, seed=7))
    other = list(stats.bootstrap_indices(50, 200, seed=8))
    # Then the same seed gives the same resamples, another seed others
    assert first == again and first != other
    assert all(len(r) == 50 and all(0 <= i < 50 for i in r) for r in first)
    # And every index is drawn about equally often (10,000 draws, 200 expected each)
    counts = np.bincount(np.array(first).ravel(), minlength=50)
    assert scipy_stats.chisquare(counts).pvalue > 0.001


def test_bootstrap_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="no cases"):
        list(stats.bootstrap_indices(0, 10, seed=1))
    with pytest.raises(ValueError, match="resamples"):
        list(stats.bootstrap_indices(3, 0, seed=1))


def paired_outcomes(n: int, p_live: float, p_cand: float, seed: int) -> tuple[list[float], list[float]]:
    """Correlated pass/fail outcomes (cases have a shared difficulty), as real evaluations."""
    rng = random.Random(seed)
    live, cand = [], []
    for _ in range(n):
        u = rng.random()
        live.append(float(u < p_live))
        cand.append(float((u if rng.random() < 0.7 else rng.random()) < p_cand))
    return cand, live


@pytest.mark.parametrize("weighted", [False, True])
def test_bootstrap_ci_equals_a_numpy_reimplementation_on_the_same_resamples(weighted: bool) -> None:
    # Given paired outcomes (and case weights)
    cand, live = paired_outcomes(60, 0.8, 0.7, seed=3)
    weights = [random.Random(i).choice([0.5, 1.0, 3.0]) for i in range(60)] if weighted else None
    # When the CI is computed
    lo, hi = stats.weighted_mean_delta_ci(cand, live, weights, resamples=500, seed=11)
    # Then it equals numpy's weighted means over the same index matrix, np.percentile'd
    idx = np.array(list(stats.bootstrap_indices(60, 500, seed=11)))
    c, lv = np.array(cand)[idx], np.array(live)[idx]
    w = np.ones_like(c) if weights is None else np.array(weights)[idx]
    deltas = (w * c).sum(axis=1) / w.sum(axis=1) - (w * lv).sum(axis=1) / w.sum(axis=1)
    expected = np.percentile(deltas, [2.5, 97.5])
    assert (lo, hi) == pytest.approx(tuple(expected), abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2])
def test_bootstrap_ci_agrees_with_scipy_paired_bootstrap(seed: int) -> None:
    # Given 200 paired, weighted outcomes
    cand, live = paired_outcomes(200, 0.85, 0.75, seed=seed)
    weights = [1.0 + (i % 3) for i in range(200)]
    # When both compute a 95% paired percentile bootstrap interval of the weighted delta
    ours = stats.weighted_mean_delta_ci(cand, live, weights, resamples=4000, seed=seed)

    def delta(c: np.ndarray, lv: np.ndarray, w: np.ndarray, axis: int = -1) -> np.ndarray:
        return (w * (c - lv)).sum(axis=axis) / w.sum(axis=axis)

    theirs = scipy_stats.bootstrap(
        (np.array(cand), np.array(live), np.array(weights)),
        delta,
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=20_000,
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    # Then the endpoints agree within Monte Carlo error (a grid step here is 0.5 pts)
    assert ours[0] == pytest.approx(theirs.low, abs=0.012)
    assert ours[1] == pytest.approx(theirs.high, abs=0.012)


def test_bootstrap_ci_covers_the_true_delta_about_95_percent_of_the_time() -> None:
    # Given 300 simulated evaluations of 80 cases whose true delta is known
    true_delta = 0.80 - 0.75  # p_cand - p_live below
    covered = 0
    trials = 300
    for trial in range(trials):
        rng = random.Random(trial)
        live = [float(rng.random() < 0.75) for _ in range(80)]
        cand = [float(rng.random() < 0.80) for _ in range(80)]
        lo, hi = stats.weighted_mean_delta_ci(cand, live, resamples=400, seed=trial)
        covered += lo <= true_delta <= hi
    # Then the coverage is near the nominal 95% (percentile intervals run a little short)
    assert 0.90 <= covered / trials <= 0.99


def test_the_interval_of_identical_sides_is_zero() -> None:
    same = [1.0, 0.0, 1.0, 1.0]
    assert stats.weighted_mean_delta_ci(same, same) == (0.0, 0.0)


def test_a_single_case_has_a_degenerate_interval() -> None:
    assert stats.weighted_mean_delta_ci([1.0], [0.0]) == (1.0, 1.0)


def test_a_statistic_undefined_on_most_resamples_gets_no_interval() -> None:
    # Given a statistic defined only when index 0 is drawn (rare with 20 cases)
    def rare(indices: list[int]) -> float | None:
        return 1.0 if indices.count(0) >= 3 else None

    intervals = stats.paired_bootstrap(20, {"rare": rare, "always": lambda i: 0.5}, resamples=200)
    # Then it has no interval, while a statistic always defined has one
    assert intervals == {"rare": None, "always": (0.5, 0.5)}


# --------------------------------------------------------------------------- exact test


@pytest.mark.parametrize(
    ("worse", "better"),
    [(1, 0), (0, 1), (5, 0), (3, 1), (10, 3), (7, 8), (20, 40), (150, 120), (1000, 1090), (2500, 2700)],
)
def test_exact_sign_test_matches_scipy_binomtest(worse: int, better: int) -> None:
    # Given discordant pair counts / When tested / Then the p-value is scipy's exact one
    expected = scipy_stats.binomtest(worse, worse + better, 0.5, alternative="two-sided").pvalue
    assert stats.exact_sign_test(worse, better) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("worse", "better"), [(3000, 2600), (4100, 4000), (10_000, 9_500)])
def test_the_log_space_tail_for_large_n_matches_scipy(worse: int, better: int) -> None:
    expected = scipy_stats.binomtest(worse, worse + better, 0.5).pvalue
    assert stats.exact_sign_test(worse, better) == pytest.approx(expected, rel=1e-7)


def test_exact_sign_test_edge_cases() -> None:
    # No discordant pairs, all ties: no evidence of any difference
    assert stats.exact_sign_test(0, 0) == 1.0
    # Equal counts: as balanced as it gets
    assert stats.exact_sign_test(4, 4) == 1.0
    # n = 1: one discordant pair proves nothing
    assert stats.exact_sign_test(1, 0) == 1.0
    # The smallest n that can reach p < 0.05: 6 of 6 one way
    assert stats.exact_sign_test(6, 0) == pytest.approx(2 / 64)
    with pytest.raises(ValueError):
        stats.exact_sign_test(-1, 2)


def test_discordant_pairs_counts_each_direction_and_drops_ties() -> None:
    cand = [1.0, 0.0, 1.0, 0.5, 0.0]
    live = [0.0, 1.0, 1.0, 0.25, 0.0]
    assert stats.discordant_pairs(cand, live) == (1, 2)  # (cand < live, cand > live)


def test_a_vanishing_p_value_is_floored_so_the_ledger_can_store_it() -> None:
    # Given 5,000 regressions and no improvement (exact p ~ 1e-1505)
    p = stats.exact_sign_test(5000, 0)
    # Then it is reported as the floor, which DynamoDB's number type holds
    assert p == stats.P_VALUE_FLOOR == 1e-100
    assert stats.exact_sign_test(400, 0) == 1e-100  # the exact-integer path too
