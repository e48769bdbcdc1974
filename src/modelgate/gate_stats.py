"""The gate's planning statistics: power of the paired test, Holm's correction, judge agreement.

Pure functions, standard library only (``statistics.NormalDist`` for normal quantiles), for
the same reason as ``modelgate.stats``: they ship in the Lambda layer. The tests check each
against scipy or statsmodels.

**Power of the paired test.** The gate's accuracy test is the exact McNemar test on the
discordant cases (``stats.exact_sign_test``). Its power is planned with Connor's normal
approximation (R. J. Connor, "Sample size for testing differences in proportions for the
paired-sample design", Biometrics 43(1), 1987): with ``n`` cases, a true drop ``d`` (live's
accuracy minus the candidate's) and a discordance rate ``psi`` (the share of cases the two
sides answer differently), the two-sided test at level ``alpha`` rejects with probability

    power = Phi((sqrt(n) * d - z(1 - alpha/2) * sqrt(psi)) / sqrt(psi - d**2))

and detecting ``d`` with power ``1 - beta`` needs
``n = (z(1 - alpha/2) * sqrt(psi) + z(1 - beta) * sqrt(psi - d**2))**2 / d**2`` cases.

The discordance rate is the one thing a plan must assume. Before any call it is unknown;
``independent_discordance`` assumes the two sides' errors are independent given live's
accuracy ``p`` (psi = p(1 - q) + (1 - p)q with q = p - d). Two versions of one service
agree far more often than that (they share the easy and the hard cases), so the
assumption over-states psi and the plan errs on the side of asking for more cases. After a
run, the observed discordance ((b + c) / n) replaces it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

_NORMAL = NormalDist()
DEFAULT_POWER = 0.80


def z(p: float) -> float:
    """The standard normal quantile (``scipy.stats.norm.ppf``)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a normal quantile needs p in (0, 1), got {p}")
    return _NORMAL.inv_cdf(p)


def _check(alpha: float, power: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")


def independent_discordance(live_accuracy: float, drop: float) -> float:
    """psi if the sides' errors were independent: p(1 - q) + (1 - p)q, q = p - drop (see module)."""
    if not 0.0 <= live_accuracy <= 1.0:
        raise ValueError(f"live accuracy must be in [0, 1], got {live_accuracy}")
    q = live_accuracy - drop
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a drop of {drop} from live's accuracy {live_accuracy} is not an accuracy")
    return live_accuracy * (1.0 - q) + (1.0 - live_accuracy) * q


def paired_power(n: int, drop: float, discordance: float, alpha: float) -> float:
    """Connor's approximate power of the two-sided McNemar test (see the module docstring)."""
    _check(alpha, 0.5)
    if n < 1:
        raise ValueError(f"power of no cases: n={n}")
    if not 0.0 < discordance <= 1.0:
        raise ValueError(f"discordance must be in (0, 1], got {discordance}")
    if not 0.0 <= drop <= discordance:
        raise ValueError(f"a drop of {drop} needs at least that much discordance, got {discordance}")
    spread = math.sqrt(max(discordance - drop * drop, 1e-12))
    return _NORMAL.cdf((math.sqrt(n) * drop - z(1.0 - alpha / 2.0) * math.sqrt(discordance)) / spread)


def cases_needed(drop: float, discordance: float, alpha: float, power: float = DEFAULT_POWER) -> int:
    """Cases for the paired test to detect ``drop`` with ``power`` (Connor's n, rounded up)."""
    _check(alpha, power)
    if not drop > 0.0:
        raise ValueError(f"no number of cases detects a drop of {drop}: it must be > 0")
    if not drop <= discordance <= 1.0:
        raise ValueError(f"a drop of {drop} needs at least that much discordance, got {discordance}")
    root = z(1.0 - alpha / 2.0) * math.sqrt(discordance) + z(power) * math.sqrt(discordance - drop * drop)
    return math.ceil(root * root / (drop * drop) - 1e-9)


def min_detectable_drop(
    n: int,
    live_accuracy: float,
    alpha: float,
    power: float = DEFAULT_POWER,
    discordance: float | None = None,
) -> float | None:
    """The smallest drop ``n`` cases detect with ``power``; ``None`` if no drop up to live's whole
    accuracy is detectable. ``discordance`` ``None``: ``independent_discordance`` at each drop;
    given (say, measured), it is a floor: a drop ``d`` needs at least ``d`` discordance."""
    _check(alpha, power)

    def psi(d: float) -> float:
        return max(discordance, d) if discordance is not None else independent_discordance(live_accuracy, d)

    top = live_accuracy
    if top <= 0.0 or psi(top) <= 0.0 or paired_power(n, top, psi(top), alpha) < power:
        return None
    lo, hi = 0.0, top
    for _ in range(60):  # bisection: power grows with the drop
        mid = (lo + hi) / 2.0
        if mid > 0.0 and psi(mid) > 0.0 and paired_power(n, mid, psi(mid), alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order (statsmodels ``multipletests``
    method "holm"): the i-th smallest is max over j <= i of min(1, (m - j + 1) p_(j)).

    Rejecting where the adjusted p-value is below alpha keeps the chance of any false
    "measurably worse" among the m tests at most alpha (S. Holm, "A simple sequentially
    rejective multiple test procedure", Scand. J. Statist. 6(2), 1979).
    """
    m = len(p_values)
    for p in p_values:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"a p-value must be in [0, 1], got {p}")
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two raters' pass/fail labels: (p_o - p_e) / (1 - p_e).

    ``None`` when chance agreement is total (both raters give one label to everything):
    kappa is undefined there, and a judge checked on such a subset has not been checked.
    """
    if len(a) != len(b):
        raise ValueError("kappa needs the same items rated by both raters")
    n = len(a)
    if n == 0:
        raise ValueError("kappa of no items")
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1.0 - pa) * (1.0 - pb)
    if expected >= 1.0 - 1e-12:
        return None
    return (observed - expected) / (1.0 - expected)
