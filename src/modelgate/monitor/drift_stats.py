"""Drift statistics: pure functions, standard library only (they ship in the Lambda layer).

What each one answers, and the convention it follows:

- :func:`psi` (Population Stability Index) over the baseline's quantile bins, or over
  categories (:func:`psi_categorical`): PSI = sum((a - e) * ln(a / e)) over the bins'
  shares, an effect size (it is the symmetrised Kullback-Leibler divergence, so the tests
  check it against ``scipy.stats.entropy(a, e) + entropy(e, a)``). Empty bins get a
  floor share (:data:`PSI_FLOOR`) so one empty bin can't make it infinite. The usual
  reading: < 0.1 no material shift, 0.1-0.25 moderate, > 0.25 major.
- :func:`ks_2samp`: the two-sample Kolmogorov-Smirnov statistic D (the largest gap between
  the two empirical CDFs, as ``scipy.stats.ks_2samp``) and its asymptotic two-sided p-value
  from the Kolmogorov distribution at sqrt(n m / (n + m)) D (``scipy.stats.kstwobign.sf``).
- :func:`chi_square`: Pearson's chi-square test of homogeneity on the 2 x k table of
  baseline vs current category counts, no continuity correction
  (``scipy.stats.chi2_contingency(..., correction=False)``), p from the chi-square
  survival function (the regularised upper incomplete gamma function).
- :func:`hashed_embedding`, :func:`centroid`, :func:`cosine_distance`: the local stand-in
  for an embedding model. A hashed bag of words (each lower-cased word hashed with BLAKE2b
  into one of ``dims`` signed buckets, then L2-normalised: the "hashing trick") is NOT a
  semantic embedding: two paraphrases with no word in common are far apart. It is
  deterministic and needs no model, which is what the embedded AWS needs; on AWS the drift
  check uses Bedrock embeddings through :mod:`modelgate.providers` instead.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections.abc import Mapping, Sequence

PSI_FLOOR = 1e-4  # the share an empty bin counts as (both sides), so PSI stays finite
DEFAULT_BINS = 10  # deciles of the baseline
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
LOCAL_EMBEDDING_MODEL = "local.hashed-bag-of-words-v1"


# --------------------------------------------------------------------------- PSI


def quantile_edges(baseline: Sequence[float], bins: int = DEFAULT_BINS) -> list[float]:
    """Inner bin edges at the baseline's quantiles (duplicates dropped: a discrete feature
    gets fewer, wider bins). ``bins`` bins need ``bins - 1`` inner edges."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    if not baseline:
        raise ValueError("the baseline sample is empty: no bins can be drawn from it")
    xs = sorted(baseline)
    edges: list[float] = []
    for i in range(1, bins):
        edge = xs[min(len(xs) - 1, (i * len(xs)) // bins)]
        if not edges or edge > edges[-1]:
            edges.append(edge)
    return edges


def bin_shares(values: Sequence[float], edges: Sequence[float]) -> list[float]:
    """Each bin's share of ``values``; bin i holds edges[i-1] <= x < edges[i]."""
    if not values:
        raise ValueError("no values to bin")
    counts = [0] * (len(edges) + 1)
    for x in values:
        counts[bisect.bisect_right(edges, x)] += 1
    return [c / len(values) for c in counts]


def psi_from_shares(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI of two share vectors over the same bins (each floored at :data:`PSI_FLOOR`, renormalised)."""
    if len(expected) != len(actual) or not expected:
        raise ValueError(f"share vectors differ in length ({len(expected)} vs {len(actual)}) or are empty")
    e = _floored(expected)
    a = _floored(actual)
    return sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e))


def _floored(shares: Sequence[float]) -> list[float]:
    if any(s < 0 for s in shares):
        raise ValueError("shares must not be negative")
    floored = [max(s, PSI_FLOOR) for s in shares]
    total = sum(floored)
    return [s / total for s in floored]


def psi(baseline: Sequence[float], current: Sequence[float], bins: int = DEFAULT_BINS) -> float:
    """PSI of ``current`` against ``baseline`` over the baseline's quantile bins."""
    edges = quantile_edges(baseline, bins)
    return psi_from_shares(bin_shares(baseline, edges), bin_shares(current, edges))


def psi_categorical(baseline: Mapping[str, int], current: Mapping[str, int]) -> float:
    """PSI over categories (the union of both sides'; a category new in ``current`` counts)."""
    categories = sorted(set(baseline) | set(current))
    nb, nc = sum(baseline.values()), sum(current.values())
    if not nb or not nc:
        raise ValueError("both sides need at least one observation")
    return psi_from_shares(
        [baseline.get(c, 0) / nb for c in categories], [current.get(c, 0) / nc for c in categories]
    )


# --------------------------------------------------------------------------- KS


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(D, two-sided asymptotic p) of the two-sample Kolmogorov-Smirnov test."""
    if not a or not b:
        raise ValueError("both samples need at least one value")
    xs, ys = sorted(a), sorted(b)
    n, m = len(xs), len(ys)
    i = j = 0
    d = 0.0
    while i < n and j < m:
        x = min(xs[i], ys[j])
        while i < n and xs[i] == x:
            i += 1
        while j < m and ys[j] == x:
            j += 1
        d = max(d, abs(i / n - j / m))
    return d, kolmogorov_sf(math.sqrt(n * m / (n + m)) * d)


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution: 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2)."""
    if x <= 0:
        return 1.0
    if x < 0.2:  # the series converges slowly here and the answer is 1 to double precision
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term < 1e-17:
            break
    return min(1.0, max(0.0, 2.0 * total))


# --------------------------------------------------------------------------- chi-square


def chi_square(baseline: Mapping[str, int], current: Mapping[str, int]) -> tuple[float, int, float]:
    """(statistic, degrees of freedom, p) of Pearson's test that both count vectors come from
    one distribution (a 2 x k contingency table; categories empty on both sides dropped)."""
    categories = sorted(c for c in set(baseline) | set(current) if baseline.get(c, 0) + current.get(c, 0) > 0)
    rows = [[baseline.get(c, 0) for c in categories], [current.get(c, 0) for c in categories]]
    totals = [sum(r) for r in rows]
    if not all(totals):
        raise ValueError("both sides need at least one observation")
    if len(categories) < 2:
        return 0.0, 0, 1.0
    grand = sum(totals)
    stat = 0.0
    for k, _ in enumerate(categories):
        column = rows[0][k] + rows[1][k]
        for r in (0, 1):
            expected = totals[r] * column / grand
            stat += (rows[r][k] - expected) ** 2 / expected
    dof = len(categories) - 1
    return stat, dof, chi2_sf(stat, dof)


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for a chi-square with ``dof`` degrees of freedom: Q(dof/2, x/2)."""
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    if x <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function (series below a + 1, Lentz's
    continued fraction above: Numerical Recipes, 6.2)."""
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_prefix) * h)


# --------------------------------------------------------------------------- embeddings


def hashed_embedding(text: str, dims: int = 256) -> list[float]:
    """The local embedding (see the module docstring): a signed hashed bag of words, unit length.
    Text without a word embeds as the zero vector."""
    if dims < 2:
        raise ValueError(f"dims must be >= 2, got {dims}")
    vector = [0.0] * dims
    for word in _WORD.findall(text.casefold()):
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        vector[value % dims] += 1.0 if (value >> 63) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def centroid(vectors: Sequence[Sequence[float]]) -> list[float]:
    """The mean vector."""
    if not vectors:
        raise ValueError("no vectors to average")
    dims = len(vectors[0])
    if any(len(v) != dims for v in vectors):
        raise ValueError(f"vectors differ in length (first has {dims})")
    sums = [0.0] * dims
    for v in vectors:
        for i, x in enumerate(v):
            sums[i] += x
    return [s / len(vectors) for s in sums]


def cosine_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """1 - cos(a, b) (0: same direction, 1: orthogonal, 2: opposite)."""
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length ({len(a)} vs {len(b)})")
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    if not na or not nb:
        raise ValueError("the cosine distance of a zero vector is undefined")
    return 1.0 - sum(x * y for x, y in zip(a, b)) / (na * nb)
