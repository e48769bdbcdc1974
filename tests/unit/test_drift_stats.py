"""The drift statistics against scipy as an independent oracle (scipy is a dev extra only)."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as sps
from scipy.spatial import distance

from modelgate.monitor import drift_stats as ds


def _normal(seed: int, n: int, mu: float = 0.0, sigma: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mu, sigma) for _ in range(n)]


@pytest.mark.parametrize(
    ("n", "m", "shift"), [(50, 70, 0.0), (400, 300, 0.3), (1000, 1000, 0.05), (30, 500, 1.0)]
)
def test_ks_statistic_matches_scipy_and_p_is_the_asymptotic_kolmogorov_tail(n, m, shift):
    a, b = _normal(1, n), _normal(2, m, mu=shift)
    d, p = ds.ks_2samp(a, b)
    expected = sps.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(sps.kstwobign.sf(math.sqrt(n * m / (n + m)) * d), rel=1e-9, abs=1e-15)
    # and close to scipy's own asymptotic p (it uses the finite-n kstwo for the same D)
    assert p == pytest.approx(expected.pvalue, abs=0.03)


def test_ks_with_ties_matches_scipy():
    a = [1, 1, 2, 2, 2, 3, 5, 5]
    b = [1, 2, 2, 3, 3, 3, 4, 5, 6]
    assert ds.ks_2samp(a, b)[0] == pytest.approx(sps.ks_2samp(a, b).statistic)


@pytest.mark.parametrize("x", [0.0, 0.1, 0.3, 0.5, 0.8, 1.0, 1.36, 2.0, 3.0, 5.0])
def test_kolmogorov_tail_matches_scipy(x):
    assert ds.kolmogorov_sf(x) == pytest.approx(sps.kstwobign.sf(x), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    ("baseline", "current"),
    [
        ({"en-GB": 40, "en-US": 35, "de-DE": 25}, {"en-GB": 38, "en-US": 40, "de-DE": 22}),
        ({"en-GB": 400, "en-US": 350, "de-DE": 250}, {"en-GB": 100, "en-US": 90, "de-DE": 60, "fr-FR": 300}),
        ({"yes": 5, "no": 95}, {"yes": 30, "no": 70}),
    ],
)
def test_chi_square_matches_scipy_contingency_without_correction(baseline, current):
    stat, dof, p = ds.chi_square(baseline, current)
    categories = sorted(set(baseline) | set(current))
    table = [[baseline.get(c, 0) for c in categories], [current.get(c, 0) for c in categories]]
    expected = sps.chi2_contingency(table, correction=False)
    assert stat == pytest.approx(expected.statistic, rel=1e-12)
    assert dof == expected.dof
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("dof", [1, 2, 3, 7, 30])
@pytest.mark.parametrize("x", [0.01, 0.5, 1.0, 4.0, 12.0, 60.0, 400.0])
def test_chi2_tail_matches_scipy(dof, x):
    assert ds.chi2_sf(x, dof) == pytest.approx(sps.chi2.sf(x, dof), rel=1e-9, abs=1e-300)


def test_one_category_on_both_sides_is_no_evidence_of_a_difference():
    assert ds.chi_square({"en": 10}, {"en": 30}) == (0.0, 0, 1.0)


def test_psi_is_the_symmetrised_kullback_leibler_divergence_of_the_binned_shares():
    baseline, current = _normal(3, 2000), _normal(4, 1500, mu=0.4, sigma=1.2)
    edges = ds.quantile_edges(baseline)
    e, a = ds.bin_shares(baseline, edges), ds.bin_shares(current, edges)
    assert len(e) == 10 and sum(e) == pytest.approx(1.0)
    assert ds.psi(baseline, current) == pytest.approx(sps.entropy(a, e) + sps.entropy(e, a), rel=1e-12)
    assert ds.psi(baseline, current) > 0.1  # a real shift reads as one
    assert ds.psi(baseline, _normal(5, 1500)) < 0.05  # the same distribution does not


def test_categorical_psi_counts_a_new_category_through_the_floor():
    value = ds.psi_categorical({"en": 50, "de": 50}, {"en": 25, "de": 25, "fr": 50})
    e, a = [0.5, 0.5, ds.PSI_FLOOR], [0.25, 0.25, 0.5]
    e, a = [x / sum(e) for x in e], [x / sum(a) for x in a]
    assert value == pytest.approx(sps.entropy(a, e) + sps.entropy(e, a), rel=1e-12)
    assert value > 1.0


def test_discrete_baseline_gets_fewer_bins_not_empty_duplicates():
    assert ds.quantile_edges([1, 1, 1, 1, 2, 2, 3, 3, 3, 3]) == [1, 2, 3]


def test_embedding_is_deterministic_unit_length_and_distance_matches_scipy():
    v = ds.hashed_embedding("How do I reset my password?")
    assert v == ds.hashed_embedding("how do i RESET my password")
    assert math.fsum(x * x for x in v) == pytest.approx(1.0)
    w = ds.hashed_embedding("Wie kann ich meine Rechnung herunterladen?")
    assert ds.cosine_distance(v, w) == pytest.approx(distance.cosine(v, w), abs=1e-12)
    c1 = ds.centroid([v, ds.hashed_embedding("reset password help")])
    c2 = ds.centroid([w, ds.hashed_embedding("Rechnung bitte")])
    assert ds.cosine_distance(c1, c2) == pytest.approx(distance.cosine(c1, c2), abs=1e-12)
    assert ds.cosine_distance(c1, c1) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ds.ks_2samp([], [1.0]), "at least one value"),
        (lambda: ds.chi_square({}, {"a": 1}), "at least one observation"),
        (lambda: ds.psi([], [1.0]), "baseline sample is empty"),
        (lambda: ds.cosine_distance([0.0, 0.0], [1.0, 0.0]), "zero vector"),
        (lambda: ds.centroid([[1.0], [1.0, 2.0]]), "differ in length"),
        (lambda: ds.chi2_sf(1.0, 0), "dof must be"),
    ],
)
def test_bad_inputs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
