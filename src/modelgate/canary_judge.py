"""The canary judge: candidate against stable over the same window, at the end of a step.

Alarms catch what is obviously broken; the judge catches what is measurably worse. Both
versions serve live traffic through the same alias in the same minutes, so load, time of
day and downstream trouble hit both alike: comparing them in the same window needs no
stale baseline.

Statistics (pure functions, standard library only, for the same reason as ``stats``):

* **Errors: Fisher's exact test, one-sided** ("the candidate's error rate is higher"),
  summed in log space from the hypergeometric distribution. Chosen over the pooled
  two-proportion z-test because a canary is where the z-test's normal approximation is
  worst: 10% of traffic, a handful of errors, often zero on one side. Fisher is exact at
  any size (so a tiny but blatant regression can still fail a canary) and conservative
  rather than anti-conservative; its cost is O(standard deviation) terms, not O(n).
* **Latency: Mann-Whitney U, one-sided** ("the candidate is slower"): exact distribution
  for small samples without ties, normal approximation with tie and continuity
  corrections otherwise (scipy's ``method="asymptotic", use_continuity=True``).

A check *fails* only when the candidate is both significantly worse (p <= alpha) and worse
by more than the policy allows: significance alone would roll back harmless wobbles on
big samples, a margin alone would roll back noise on small ones (the evaluation gate's
rule, and Kayenta's). Alpha is split across the checks that run (Bonferroni), so one step's
false-rollback rate stays <= alpha. Each step judges its own window, so the looks of a
multi-step rollout are on disjoint data.

*Not enough evidence is never a pass*: a side with too few invocations (or latency
values), or an increase beyond the margin that is still within noise, yields
``not_enough_evidence``; the minimum sample size gates a pass, never a fail. The policy
then says what to do: wait longer, send synthetic traffic, or roll back.

What CloudWatch can give (``modelgate.adapters.metrics.collect_window``): ``AWS/Lambda`` metrics per minute,
per ``ExecutedVersion`` of the alias: exact counts (Sum of Invocations and Errors) but no
per-invocation durations, only per-period statistics of Duration. So the latency test
runs on per-period values (one value per minute with traffic), which is honest but
weak: a 5-minute bake gives ~5 values a side. The per-period statistic defaults to
``Average``: a percentile of the few calls the candidate gets in one minute (p90 of 3
calls is about their maximum) is biased upward against the stable side's p90 of many
calls, which would fail healthy canaries; the mean has no such small-sample bias.
Per-invocation durations exist only in the functions' REPORT log lines (Logs Insights,
log stream names carry the version); an adapter for those can feed the same judge.
"""

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The judge's policy lives with the release policy's models (re-exported here).
from modelgate.judge_policy import JudgePolicy  # noqa: F401
from modelgate.stats import P_VALUE_FLOOR

Outcome = Literal["pass", "fail", "not_enough_evidence"]
Action = Literal["proceed", "rollback", "wait", "synthetic"]
_EPSILON = 1e-12
# Exact Mann-Whitney when there are no ties and n1 * n2 is at most this (the counting
# polynomial costs ~min(n1, n2) * n1 * n2 integer additions: <= 125k here).
MWU_EXACT_LIMIT = 2_500
# A tail term this much smaller than the running sum can't change a float64 sum.
_NEGLIGIBLE = 1e-17


# --------------------------------------------------------------------------- models


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SideSample(_Frozen):
    """One side of the comparison over one window.

    ``latencies_ms`` are per-invocation durations when available, otherwise one
    per-period statistic per period with traffic; ``latency_basis`` says which (it is
    quoted in the verdict).
    """

    version: str | None = None
    invocations: int = Field(ge=0)
    errors: int = Field(ge=0)
    latencies_ms: tuple[float, ...] = ()
    latency_basis: str = "per invocation"

    @model_validator(mode="after")
    def _errors_within_invocations(self) -> "SideSample":
        if self.errors > self.invocations:
            raise ValueError(f"{self.errors} errors out of {self.invocations} invocations")
        return self

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.invocations if self.invocations else None


class Check(_Frozen):
    """One metric's comparison, with the numbers that decided it."""

    metric: Literal["errors", "latency"]
    outcome: Outcome
    message: str
    method: str
    alpha: float
    p_value: float | None = None
    candidate: float | None = None  # error rate, or median latency (ms)
    stable: float | None = None
    increase: float | None = None  # absolute: rate points, or ms
    relative_increase: float | None = None  # latency only


class CanaryVerdict(_Frozen):
    verdict: Outcome
    action: Action
    message: str
    extensions_used: int = 0
    checks: tuple[Check, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


# --------------------------------------------------------------------------- errors


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact_greater(errors_a: int, n_a: int, errors_b: int, n_b: int) -> float:
    """One-sided Fisher exact p-value that side a's error proportion exceeds side b's.

    Given both margins (total errors K among N calls, n_a calls on side a), the errors
    on side a are Hypergeometric(N, K, n_a) under "no difference"; the p-value is
    P(X >= errors_a) (scipy: ``fisher_exact([[ea, na - ea], [eb, nb - eb]], "greater")``).

    The tail is summed in log space, always walking *away* from the distribution's mode,
    where terms only shrink, and stopping once they stop mattering: O(sd) terms even for
    millions of calls. When errors_a is at or below the mode the p-value is 1 minus the
    opposite tail, which is then not small, so the subtraction loses nothing.
    """
    for name, value in (("errors_a", errors_a), ("n_a", n_a), ("errors_b", errors_b), ("n_b", n_b)):
        if value < 0:
            raise ValueError(f"{name} can't be negative, got {value}")
    if errors_a > n_a or errors_b > n_b:
        raise ValueError(f"more errors than calls: {errors_a}/{n_a}, {errors_b}/{n_b}")
    total, errors = n_a + n_b, errors_a + errors_b
    low, high = max(0, n_a - (total - errors)), min(errors, n_a)
    if errors_a <= low:
        return 1.0

    def log_pmf(x: int) -> float:
        return _log_comb(errors, x) + _log_comb(total - errors, n_a - x) - _log_comb(total, n_a)

    mode = (n_a + 1) * (errors + 1) // (total + 2)
    if errors_a > mode:
        p = math.exp(_log_tail(log_pmf, range(errors_a, high + 1)))
    else:
        p = 1.0 - math.exp(_log_tail(log_pmf, range(errors_a - 1, low - 1, -1)))
    return min(1.0, max(P_VALUE_FLOOR, p))


def _log_tail(log_pmf: Callable[[int], float], xs: range) -> float:
    """log of sum(pmf(x) for x in xs), for xs walking away from the mode (shrinking terms)."""
    first = log_pmf(xs[0])
    total = 1.0
    for x in xs[1:]:
        term = math.exp(log_pmf(x) - first)
        total += term
        if term < total * _NEGLIGIBLE:
            break
    return first + math.log(total)


# --------------------------------------------------------------------------- latency


class RankTest(NamedTuple):
    u: float  # the candidate's U: pairs where it is slower, ties counting one half
    p_value: float
    method: Literal["exact", "asymptotic"]


def mann_whitney_greater(
    x: Sequence[float], y: Sequence[float], *, method: Literal["auto", "exact", "asymptotic"] = "auto"
) -> RankTest:
    """One-sided Mann-Whitney U test that ``x`` tends to be larger than ``y``.

    ``auto`` is exact when there are no ties and n1 * n2 <= :data:`MWU_EXACT_LIMIT`,
    asymptotic otherwise. Asymptotic matches scipy's ``mannwhitneyu(x, y,
    alternative="greater", method="asymptotic", use_continuity=True)``: normal
    approximation, tie-corrected variance, continuity correction of 1/2.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U needs at least one value on each side")
    ranks, tie_sizes = _average_ranks([*x, *y])
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    ties = any(t > 1 for t in tie_sizes)
    if method == "auto":
        method = "exact" if not ties and n1 * n2 <= MWU_EXACT_LIMIT else "asymptotic"
    if method == "exact":
        if ties:
            raise ValueError("the exact Mann-Whitney distribution assumes no ties")
        counts = _u_counts(n1, n2)
        upper = sum(counts[round(u) :])
        p = upper / math.comb(n1 + n2, n1)  # exact integers, correctly rounded
    else:
        n = n1 + n2
        tie_term = sum(t**3 - t for t in tie_sizes)
        variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
        if variance <= 0:  # every value tied: no evidence either way
            p = 1.0
        else:
            z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
            p = 0.5 * math.erfc(z / math.sqrt(2.0))
    return RankTest(u=u, p_value=min(1.0, max(P_VALUE_FLOOR, p)), method=method)


def _average_ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """1-based ranks (ties share their average rank) and the size of every tie group."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    sizes = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        average = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = average
        sizes.append(j - i + 1)
        i = j + 1
    return ranks, sizes


def _u_counts(n1: int, n2: int) -> list[int]:
    """How many of the C(n1 + n2, n1) orderings give U = 0, 1, ..., n1 * n2.

    These are the coefficients of the Gaussian binomial [n1 + n2 choose n1]_q, built as
    prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i): each factor is a multiplication and an exact
    division of an integer polynomial, O(m * m * n) additions in all.
    """
    m, n = min(n1, n2), max(n1, n2)  # the distribution is the same either way round
    poly = [1]
    for i in range(1, m + 1):
        grown = poly + [0] * (n + i)
        for k, c in enumerate(poly):  # * (1 - q^(n+i))
            grown[k + n + i] -= c
        for k in range(i, len(grown)):  # / (1 - q^i)
            grown[k] += grown[k - i]
        poly = grown[: i * n + 1]
    return poly


# --------------------------------------------------------------------------- the judge


def judge_canary(
    candidate: SideSample,
    stable: SideSample,
    policy: JudgePolicy,
    *,
    extensions_used: int = 0,
) -> CanaryVerdict:
    """The verdict on one step's window, and what the pipeline should do about it.

    ``extensions_used``: how many times this step's bake was already extended (or
    topped up with synthetic traffic) for lack of evidence; past the policy's
    ``max_extensions`` a lack of evidence rolls back.
    """
    runs_latency = policy.judges_latency
    alpha = policy.significance_level / (2 if runs_latency else 1)
    checks = [_errors_check(candidate, stable, policy, alpha)]
    if runs_latency:
        checks.append(_latency_check(candidate, stable, policy, alpha))
    outcomes = {c.outcome for c in checks}
    verdict: Outcome = (  # a fail outweighs missing evidence elsewhere
        "fail" if "fail" in outcomes
        else "not_enough_evidence" if "not_enough_evidence" in outcomes
        else "pass"
    )
    action: Action
    if verdict == "pass":
        action, why = "proceed", ""
    elif verdict == "fail":
        action, why = "rollback", ""
    elif policy.on_not_enough_evidence == "fail":
        action, why = "rollback", " (policy: not enough evidence fails the canary)"
    elif extensions_used >= policy.max_extensions:
        action = "rollback"
        why = f" (already extended {extensions_used} of {policy.max_extensions} times)"
    else:
        action = policy.on_not_enough_evidence
        why = f" (extension {extensions_used + 1} of {policy.max_extensions})"
    message = "; ".join(c.message for c in checks) + f" => {verdict}, {action}{why}"
    return CanaryVerdict(
        verdict=verdict,
        action=action,
        message=message,
        extensions_used=extensions_used,
        checks=tuple(checks),
    )


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _pts(x: float) -> str:
    return f"{x * 100:+.1f} pts"


def _errors_check(
    candidate: SideSample, stable: SideSample, policy: JudgePolicy, alpha: float
) -> Check:
    method = "Fisher exact, one-sided"
    limit = policy.max_error_rate_increase
    counts = f"candidate {candidate.errors}/{candidate.invocations}"
    counts += f" ({_pct(candidate.error_rate)})" if candidate.error_rate is not None else ""
    counts += f" vs stable {stable.errors}/{stable.invocations}"
    counts += f" ({_pct(stable.error_rate)})" if stable.error_rate is not None else ""
    if candidate.error_rate is None or stable.error_rate is None:
        empty = [n for n, s in (("candidate", candidate), ("stable", stable)) if not s.invocations]
        return Check(
            metric="errors", outcome="not_enough_evidence", method=method, alpha=alpha,
            message=f"errors: {counts}: no invocations on {' and '.join(empty)}, nothing to compare",
        )
    increase = candidate.error_rate - stable.error_rate
    p = fisher_exact_greater(candidate.errors, candidate.invocations, stable.errors, stable.invocations)
    beyond = increase > limit + _EPSILON
    fewest = min(candidate.invocations, stable.invocations)
    numbers = (
        f"errors: {counts}: {_pts(increase)} (allowed {_pts(limit)}), "
        f"one-sided p={p:.2g} (alpha {alpha:.3g})"
    )
    if beyond and p <= alpha:
        outcome: Outcome = "fail"
        why = "significantly worse by more than allowed"
    elif fewest < policy.min_invocations:
        outcome = "not_enough_evidence"
        why = f"fewer than {policy.min_invocations} invocations on a side"
    elif beyond:
        outcome, why = "not_enough_evidence", "beyond the allowed increase but within noise"
    else:
        outcome, why = "pass", "within the allowed increase"
    return Check(
        metric="errors", outcome=outcome, method=method, alpha=alpha, p_value=p,
        candidate=candidate.error_rate, stable=stable.error_rate, increase=increase,
        message=f"{numbers}: {why}",
    )


def _latency_check(
    candidate: SideSample, stable: SideSample, policy: JudgePolicy, alpha: float
) -> Check:
    basis = candidate.latency_basis
    xs, ys = candidate.latencies_ms, stable.latencies_ms
    if not xs or not ys:
        empty = [n for n, values in (("candidate", xs), ("stable", ys)) if not values]
        return Check(
            metric="latency", outcome="not_enough_evidence", method="Mann-Whitney U, one-sided",
            alpha=alpha,
            message=f"latency ({basis}): no values on {' and '.join(empty)}, nothing to compare",
        )
    test = mann_whitney_greater(xs, ys)
    median_c, median_s = statistics.median(xs), statistics.median(ys)
    increase = median_c - median_s
    relative = increase / median_s if median_s > 0 else (math.inf if increase > 0 else 0.0)
    limits = []
    exceeded = False
    if policy.max_latency_increase_ms is not None:
        limits.append(f"{policy.max_latency_increase_ms:+.0f} ms")
        exceeded |= increase > policy.max_latency_increase_ms + _EPSILON
    if policy.max_latency_increase_ratio is not None:
        limits.append(f"{policy.max_latency_increase_ratio:+.1%}")
        exceeded |= relative > policy.max_latency_increase_ratio + _EPSILON
    numbers = (
        f"latency ({basis}): candidate median {median_c:.0f} ms over {len(xs)} vs stable "
        f"{median_s:.0f} ms over {len(ys)}: {increase:+.0f} ms ({relative:+.1%}; allowed "
        f"{' and '.join(limits)}), one-sided p={test.p_value:.2g} {test.method} (alpha {alpha:.3g})"
    )
    if exceeded and test.p_value <= alpha:
        outcome: Outcome = "fail"
        why = "significantly slower by more than allowed"
    elif min(len(xs), len(ys)) < policy.min_latency_samples:
        outcome, why = "not_enough_evidence", f"fewer than {policy.min_latency_samples} values on a side"
    elif exceeded:
        outcome, why = "not_enough_evidence", "beyond the allowed increase but within noise"
    else:
        outcome, why = "pass", "within the allowed increase"
    return Check(
        metric="latency", outcome=outcome, method=f"Mann-Whitney U, one-sided, {test.method}",
        alpha=alpha, p_value=test.p_value, candidate=median_c, stable=median_s,
        increase=increase, relative_increase=relative if math.isfinite(relative) else None,
        message=f"{numbers}: {why}",
    )
