"""One drift check over 100,000 captured records against a baseline, and the cost of capture.

    python bench/drift_check.py [--records 100000] [--baseline 2000]

Drift: the records are profiled (features, the local hashed embedding of a 500-request
sample) and compared with a baseline profile (PSI + KS per number, chi-square + PSI per
category, centroid distance), as the drift check function does after reading its window;
the clock runs around profile + compare (the S3 reads are not in it: on AWS they depend on
the object count, one object per capture batch). Capture: the time a request spends in
``CaptureBuffer.add`` (the sampled path; one request in ``batch_records`` writes the batch,
here to an in-memory S3 stand-in that only counts), p50 / p99 / max per request, and the
records per PutObject. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime

from modelgate.monitor import capture, drift
from modelgate.monitor.policy import CapturePolicy, DriftPolicy
from modelgate.stats import percentile

QUESTIONS = ["How do I reset my password?", "Can I export my notes as PDF or Markdown?", "Is there a family plan?",
             "How do I change the email address on my account?", "Why was my card declined?",
             "Wie kann ich meine Rechnung herunterladen?", "Où trouver ma facture ?"]


def records(n: int, seed: int, shift: float) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        q = rng.choice(QUESTIONS[:5] if rng.random() > shift else QUESTIONS[5:])
        answer = "Go to Settings > Account. " * rng.randint(1, 6)
        out.append({"inputs": {"question": q, "locale": rng.choice(["en-GB", "en-US", "de-DE", "fr-FR"])},
                    "output": answer, "input_tokens": 20 + len(q) // 4, "output_tokens": len(answer) // 4,
                    "latency_ms": max(1.0, rng.gauss(45, 9)), "refusal": rng.random() < 0.04, "error": None})
    return out


class CountingS3:
    def __init__(self) -> None:
        self.puts = 0

    def put_object(self, **_: object) -> dict:
        self.puts += 1
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=2000)
    args = parser.parse_args(argv)
    policy = DriftPolicy(enabled=True, categorical_inputs=["locale"])
    base = drift.profile(records(args.baseline, 1, 0.0), policy)
    window_records = records(args.records, 2, 0.6)  # 60% of requests are a new kind of question

    started = time.perf_counter()
    window = drift.profile(window_records, policy)
    verdict, checks = drift.compare(base, window, policy)
    seconds = time.perf_counter() - started

    cap = CapturePolicy(enabled=True, sample_rate=1.0, batch_records=50, flush_seconds=3600)
    buffer, s3, when = capture.CaptureBuffer(), CountingS3(), datetime.now(UTC)
    timings = []
    for r in window_records[:20_000]:
        record = {**r, "ts": when.isoformat(), "service": "bench", "version": "1"}
        t0 = time.perf_counter()
        buffer.add(cap, record, s3, "bench", when)
        timings.append((time.perf_counter() - t0) * 1e6)

    result = {
        "records": args.records,
        "seconds": round(seconds, 3),
        "records_per_second": round(args.records / seconds),
        "verdict": verdict,
        "drifted": [c.feature for c in checks if c.result == "drift"],
        "capture_us_per_request_p50": round(percentile(timings, 50), 1),
        "capture_us_per_request_p99": round(percentile(timings, 99), 1),
        "capture_us_per_request_max": round(max(timings), 1),
        "capture_records_per_put": round(len(timings) / max(1, s3.puts), 1),
    }
    print(f"drift check over {args.records:,} records: {seconds:.2f} s ({result['records_per_second']:,} records/s), "
          f"verdict {verdict} ({', '.join(result['drifted']) or 'nothing'})")
    print(f"capture: p50 {result['capture_us_per_request_p50']} us, p99 {result['capture_us_per_request_p99']} us "
          f"per request (the batch serialised; its PutObject counted, not timed), {result['capture_records_per_put']} records per PutObject")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
