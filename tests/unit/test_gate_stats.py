"""The gate's planning statistics, checked against scipy and statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.multitest import multipletests

from modelgate import gate_stats


@pytest.mark.parametrize("p", [0.5, 0.8, 0.9, 0.975, 0.995, 0.01])
def test_normal_quantile_is_scipys(p: float) -> None:
    assert gate_stats.z(p) == pytest.approx(scipy_stats.norm.ppf(p), abs=1e-9)


def _exact_power(n: int, drop: float, psi: float, alpha: float) -> float:
    """Power of the gate's own rule (exact McNemar p < alpha and more worse than better),
    summed exactly with scipy: discordant D ~ Bin(n, psi), worse | D ~ Bin(D, (psi + drop) / 2psi)."""
    total = 0.0
    share_worse = (psi + drop) / (2 * psi)
    for d in range(1, n + 1):
        worse = np.arange(d + 1)
        p_values = np.minimum(1.0, 2 * scipy_stats.binom.cdf(np.minimum(worse, d - worse), d, 0.5))
        reject = (p_values < alpha) & (worse > d - worse)
        total += scipy_stats.binom.pmf(d, n, psi) * scipy_stats.binom.pmf(worse[reject], d, share_worse).sum()
    return float(total)


@pytest.mark.parametrize(("drop", "psi", "alpha"), [(0.05, 0.15, 0.05), (0.1, 0.2, 0.05), (0.08, 0.3, 0.01)])
def test_cases_needed_gives_the_gate_about_80_percent_power_exactly(drop: float, psi: float, alpha: float) -> None:
    # Given Connor's sample size for a drop / When the gate's exact test's power is summed with scipy
    n = gate_stats.cases_needed(drop, psi, alpha)
    exact = _exact_power(n, drop, psi, alpha)
    # Then it is near 80% (the normal approximation and the test's discreteness: a few points either way)
    assert 0.74 <= exact <= 0.86, (n, exact)
    assert gate_stats.paired_power(n, drop, psi, alpha) >= 0.80
    assert gate_stats.paired_power(n - 1, drop, psi, alpha) < 0.80


def test_min_detectable_drop_inverts_cases_needed() -> None:
    n = gate_stats.cases_needed(0.05, 0.15, 0.05)
    found = gate_stats.min_detectable_drop(n, 0.9, 0.05, discordance=0.15)
    assert found is not None and found == pytest.approx(0.05, abs=2e-3)
    assert gate_stats.paired_power(n, found, 0.15, 0.05) == pytest.approx(0.80, abs=1e-6)


def test_independent_discordance_is_the_probability_the_sides_disagree() -> None:
    # live right with p, candidate with q = p - d, independently: P(disagree) = p(1-q) + (1-p)q
    p, d = 0.85, 0.05
    rng = np.random.default_rng(7)
    live = rng.random(400_000) < p
    cand = rng.random(400_000) < p - d
    assert gate_stats.independent_discordance(p, d) == pytest.approx(float(np.mean(live != cand)), abs=3e-3)


def test_a_tiny_dataset_detects_no_drop_and_bad_inputs_are_named() -> None:
    assert gate_stats.min_detectable_drop(3, 0.9, 0.05) is None
    with pytest.raises(ValueError, match="must be > 0"):
        gate_stats.cases_needed(0.0, 0.2, 0.05)
    with pytest.raises(ValueError, match="discordance"):
        gate_stats.cases_needed(0.3, 0.2, 0.05)
    with pytest.raises(ValueError, match="alpha"):
        gate_stats.cases_needed(0.1, 0.2, 1.5)
    with pytest.raises(ValueError, match="not an accuracy"):
        gate_stats.independent_discordance(0.1, 0.2)


@pytest.mark.parametrize(
    "p_values",
    [[0.01, 0.04, 0.03, 0.2], [0.5], [0.001, 0.001, 0.9, 0.02, 0.049], [1.0, 0.0, 0.3]],
)
def test_holm_matches_statsmodels(p_values: list[float]) -> None:
    expected = multipletests(p_values, alpha=0.05, method="holm")[1]
    assert gate_stats.holm(p_values) == pytest.approx(list(expected), abs=1e-12)


def test_holm_rejects_a_p_value_outside_0_1() -> None:
    with pytest.raises(ValueError, match="p-value"):
        gate_stats.holm([0.2, 1.2])


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random(60) < 0.6
    b = np.where(rng.random(60) < 0.7, a, ~a)
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    ours = gate_stats.cohen_kappa(a.tolist(), b.tolist())
    assert ours == pytest.approx(cohens_kappa(table).kappa, abs=1e-12)


def test_kappa_is_undefined_when_both_raters_give_one_label() -> None:
    assert gate_stats.cohen_kappa([True] * 5, [True] * 5) is None
    with pytest.raises(ValueError, match="same items"):
        gate_stats.cohen_kappa([True], [True, False])
