"""Evaluator throughput against a provider with a fixed simulated latency.

    python bench/eval_throughput.py [--cases 400] [--concurrency 32] [--latency-ms 50]

Every call of the fake provider sleeps ``latency`` and answers, so the best the evaluator
can do is ``concurrency / latency`` calls per second; how close it gets measures the
overhead of its pool, scoring and report (paired bootstrap included: the clock runs
around the whole ``evaluate()`` call). Candidate and live both run, as in the pipeline.
``cases_per_second`` counts case evaluations (one case on one side is one model call),
the unit the limit is in. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from modelgate.evaluation.comparison import CANDIDATE, LIVE, build_report
from modelgate.evaluation.dataset import DatasetCase
from modelgate.evaluation.runner import evaluate


def fake_provider(latency_s: float, right_every: int) -> Callable[[dict[str, str]], Mapping[str, Any]]:
    """Answers case i correctly unless i % right_every == 0, after sleeping latency_s."""

    def invoke(inputs: dict[str, str]) -> Mapping[str, Any]:
        time.sleep(latency_s)
        i = int(inputs["question"])
        text = "I don't know." if i % right_every == 0 else f"The answer is {i}."
        return {"output": text, "usage": {"input_tokens": 20, "output_tokens": 6}, "cost_usd": 1e-5}

    return invoke


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args(argv)

    cases = [
        DatasetCase(id=f"case-{i:05d}", inputs={"question": str(i)}, expected=f"answer is {i}")
        for i in range(args.cases)
    ]
    latency = args.latency_ms / 1000.0
    invokers = {CANDIDATE: fake_provider(latency, 10), LIVE: fake_provider(latency, 12)}
    start = time.perf_counter()
    report = evaluate(cases, invokers, concurrency=args.concurrency)
    seconds = time.perf_counter() - start

    rebuild = time.perf_counter()
    build_report(report.results)  # the same report again: what the statistics cost
    report_seconds = time.perf_counter() - rebuild

    calls = len(report.results)
    rate = calls / seconds
    limit = args.concurrency / latency
    comparison = report.comparison
    print(f"cases x sides     {args.cases} x {len(invokers)} = {calls} calls")
    print(f"concurrency       {args.concurrency}, simulated latency {args.latency_ms:g} ms")
    print(f"wall time         {seconds:.3f} s (evaluate(): calls, scoring, report, bootstrap)")
    print(f"  of which report {report_seconds:.3f} s (metrics + paired bootstrap, timed again alone)")
    print(f"throughput        {rate:.1f} case evaluations/s; limit {limit:.1f}/s; ratio {rate / limit:.3f}")
    if comparison is not None:
        lo, hi = comparison.accuracy.ci95 or (float("nan"), float("nan"))
        print(
            f"accuracy delta    {comparison.accuracy.delta:+.4f} (95% CI {lo:+.4f} to {hi:+.4f}; "
            f"{comparison.paired_test.method} p={comparison.paired_test.p_value:.3g})"
        )
    print(
        json.dumps(
            {
                "cases_per_second": round(rate, 1),
                "limit": round(limit, 1),
                "ratio": round(rate / limit, 3),
                "calls": calls,
                "concurrency": args.concurrency,
                "latency_ms": args.latency_ms,
                "seconds": round(seconds, 3),
                "report_seconds": round(report_seconds, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
