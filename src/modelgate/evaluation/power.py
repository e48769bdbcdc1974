"""How many cases the gate needs: the plan before a run, and what an inconclusive verdict lacks.

``plan_power`` answers, before any call (``modelgate eval --plan``): with this dataset, this
policy's limits and live's accuracy, what is the smallest accuracy drop the gate detects, and
how many cases would it need to detect the limit itself? ``cases_to_settle`` answers, after
an inconclusive verdict, how many cases in all would settle it, from the run's own numbers.

Assumptions, stated with every figure (``modelgate.gate_stats`` has the formulas):

* the paired exact McNemar test at the policy's ``significance_level``, divided by the
  number of tests in the gate's Holm family (overall accuracy, each slice, a gating judge):
  Holm's first and strictest step, so the plan never promises more than the gate delivers;
* 80% power;
* the discordance rate (share of cases the sides answer differently): before a run, as if
  the sides' errors were independent given live's accuracy (more discordance than two
  versions of one service show, so the plan asks for more cases, not fewer); after a run,
  the observed one.
"""

import math

from pydantic import BaseModel, ConfigDict

from modelgate import gate_stats
from modelgate.policy import ReleasePolicy

UNKNOWN_LIVE_ACCURACY = 0.5  # the worst case: independent errors disagree most at p = 0.5


class PowerLine(BaseModel):
    """One tested scope's power: the whole dataset, or one slice."""

    model_config = ConfigDict(frozen=True)

    scope: str
    n: int
    limit: float
    alpha: float
    live_accuracy: float
    min_detectable_drop: float | None
    cases_for_limit: int | None
    statement: str


def _pts(x: float) -> str:
    return f"{x * 100:.1f} pts"


def family_size(policy: ReleasePolicy, judged: bool) -> int:
    """Tests in the gate's Holm family: overall accuracy, each slice, and a judge criterion."""
    return 1 + len(policy.slices) + int(judged)


def power_line(
    scope: str,
    n: int,
    limit: float,
    alpha: float,
    live_accuracy: float,
    *,
    tests: int,
    assumed: str,
    discordance: float | None = None,
) -> PowerLine:
    """The power statement for one scope (see the module docstring for the assumptions).

    ``discordance`` ``None``: independent errors (``gate_stats.independent_discordance``)."""
    mdd = gate_stats.min_detectable_drop(n, live_accuracy, alpha, discordance=discordance) if n > 0 else None
    needed = None
    if 0.0 < limit <= live_accuracy:
        psi = gate_stats.independent_discordance(live_accuracy, limit) if discordance is None else max(discordance, limit)
        needed = gate_stats.cases_needed(limit, psi, alpha)
    level = f"alpha {alpha:.3g}" + (f" (the policy's {alpha * tests:.3g} / {tests} tests, Holm)" if tests > 1 else "")
    head = f"{scope}: {n} cases, {level}, 80% power, live accuracy {live_accuracy:.2f} {assumed}"
    found = (
        f"the smallest drop it detects is {_pts(mdd)}" if mdd is not None
        else "with so few cases not even the largest possible drop is detected with 80% power"
    )
    if limit <= 0.0:
        tail = (
            f"the limit is {_pts(0.0)}: any measurable drop fails it, and no number of cases detects a drop of "
            "exactly zero"
        )
    elif needed is None:
        tail = f"the limit {_pts(limit)} is above live's accuracy: no drop that large can occur"
    else:
        more = f"{needed - n} more" if needed > n else "already enough"
        which = f"cases tagged {scope.split(' ', 1)[1]}" if scope.startswith("slice ") else "cases"
        tail = f"detecting the limit of {_pts(limit)} needs {needed} {which} ({more})"
    return PowerLine(
        scope=scope, n=n, limit=limit, alpha=alpha, live_accuracy=live_accuracy, min_detectable_drop=mdd,
        cases_for_limit=needed, statement=f"{head}: {found}; {tail}",
    )


def plan_power(
    tags_per_case: list[list[str]],
    policy: ReleasePolicy,
    live_accuracy: float | None,
    *,
    judged_cases: int = 0,
    discordance: float | None = None,
) -> list[PowerLine]:
    """Power for the whole dataset and each of the policy's slices, before any call.

    ``tags_per_case`` holds each case's tags; ``judged_cases`` counts the llm_judge cases
    (a judge criterion joins the Holm family when there are any). ``live_accuracy``
    ``None``: unknown, planned at the worst case (0.5) and said so. ``discordance``: the
    share of cases the sides answer differently (say, from the last release's report);
    ``None``: as if their errors were independent. A given discordance is a floor: a drop
    of d needs at least d discordance.
    """
    if live_accuracy is not None and not 0.0 < live_accuracy <= 1.0:
        raise ValueError(f"live accuracy must be in (0, 1], got {live_accuracy}")
    if discordance is not None and not 0.0 < discordance <= 1.0:
        raise ValueError(f"discordance must be in (0, 1], got {discordance}")
    p = UNKNOWN_LIVE_ACCURACY if live_accuracy is None else live_accuracy
    assumed = "(unknown: the worst case assumed)" if live_accuracy is None else "(given)"
    assumed += " and independent errors" if discordance is None else f", discordance {discordance:.1%} (given)"
    tests = family_size(policy, judged_cases > 0)
    alpha = policy.significance_level / tests
    common = {"tests": tests, "assumed": assumed, "discordance": discordance}
    lines = [power_line("all cases", len(tags_per_case), policy.max_accuracy_drop, alpha, p, **common)]
    for tag, criteria in sorted(policy.slices.items()):
        n = sum(tag in tags for tags in tags_per_case)
        lines.append(power_line(f"slice {tag}", n, criteria.max_accuracy_drop, alpha, p, **common))
    return lines


def cases_to_settle(
    *,
    n: int,
    drop: float,
    limit: float,
    interval: tuple[float, float] | None,
    discordance: float,
    alpha: float,
    significant: bool,
) -> tuple[int | None, str]:
    """How many cases in all would likely settle an inconclusive drop, and how that was computed.

    * Beyond the limit but not significant: the cases for the paired test to detect the
      observed drop with 80% power at the observed discordance (``gate_stats.cases_needed``).
    * Within the limit but measurably worse, with the interval reaching past the limit: an
      interval's half-width shrinks as 1 / sqrt(n), so its upper end reaches the limit at
      n x ((upper - drop) / (limit - drop))**2 cases.

    ``None`` when no number of cases would (a drop exactly at the limit, or no discordance).
    """
    if drop > limit or not significant:
        if drop <= 0.0 or discordance <= 0.0:
            return None, "the sides never disagree here: more cases of the same kind would not settle it"
        psi = max(discordance, drop)
        needed = gate_stats.cases_needed(drop, psi, alpha)
        return max(needed, n + 1), (
            f"to detect the observed drop {_pts(drop)} at the observed discordance {psi:.1%} "
            f"(alpha {alpha:.3g}, 80% power)"
        )
    needed = cases_for_interval(n, drop, limit, interval)
    if needed is None:
        return None, f"the drop {_pts(drop)} sits on the limit: no number of cases tells it from the limit"
    return needed, (
        f"for the 95% interval's upper end ({_pts(interval[1])}) to come within the limit "  # type: ignore[index]
        f"({_pts(limit)}): the half-width shrinks as 1/sqrt(n)"
    )


def cases_for_interval(n: int, point: float, limit: float, interval: tuple[float, float] | None) -> int | None:
    """Cases in all for the 95% interval to clear the limit on the point's side, if its half-width
    shrinks as 1/sqrt(n) around the same point: the upper end down to the limit when the point
    is within it, the lower end up past it when the point is beyond. ``None``: the point sits on
    the limit (or there is no interval)."""
    if interval is None or abs(limit - point) <= 1e-9:
        return None
    reach = interval[1] - point if point < limit else point - interval[0]
    factor = (reach / abs(limit - point)) ** 2
    return max(math.ceil(n * factor), n + 1)
