"""TrafficGenerator: live calls on an alias, counted per executed version."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from modelgate_harness.traffic import UNKNOWN_VERSION, TrafficGenerator

DEADLINE_SECONDS = 10.0


class FakeLambdaClient:
    """Answers like boto3's lambda.invoke: version 2 serves every third call.

    A request with ``"fail": true`` raises in the handler (FunctionError); one with
    ``"boom": true`` makes the call itself fail.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(kwargs)
            number = len(self.calls)
        request = json.loads(kwargs["Payload"])
        if request.get("boom"):
            raise ConnectionError("endpoint unreachable")
        response: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": "2" if number % 3 == 0 else "1",
            "Payload": io.BytesIO(b'{"answer": 42}'),
        }
        if request.get("fail"):
            response["FunctionError"] = "Unhandled"
        return response


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)


def test_sends_requests_cyclically_to_the_qualifier_and_counts_per_version() -> None:
    # Given a generator over two requests, the second one failing in the handler
    client = FakeLambdaClient()
    traffic = TrafficGenerator(
        lambda_client=client,
        function_name="inference",
        qualifier="live",
        requests=[{"q": "a"}, {"q": "b", "fail": True}],
        rate_per_second=500,
        max_requests=12,
    )

    # When it runs to its request budget
    traffic.start()
    wait_until(lambda: traffic.sent == 12)
    traffic.stop()

    # Then every call went to the alias, cycling through the requests in order
    assert len(client.calls) == 12
    assert {c["FunctionName"] for c in client.calls} == {"inference"}
    assert {c["Qualifier"] for c in client.calls} == {"live"}
    assert [json.loads(c["Payload"])["q"] for c in client.calls[:4]] == ["a", "b", "a", "b"]
    # and outcomes are split per executed version: calls 3, 6, 9, 12 hit version 2,
    # odd-numbered calls sent request "a" (ok), even-numbered ones request "b" (error)
    assert traffic.stats == {
        "1": {"ok": 4, "error": 4},
        "2": {"ok": 2, "error": 2},
    }


def test_stop_joins_and_no_call_follows() -> None:
    # Given a generator with no request budget
    client = FakeLambdaClient()
    traffic = TrafficGenerator(
        lambda_client=client,
        function_name="inference",
        qualifier="live",
        requests=[{"q": "a"}],
        rate_per_second=100,
    )
    traffic.start()
    wait_until(lambda: traffic.sent >= 3)

    # When it is stopped
    traffic.stop()
    sent = traffic.sent

    # Then nothing more is sent
    time.sleep(0.1)
    assert traffic.sent == sent == len(client.calls)
    assert not any(t.name == "modelgate-traffic" and t.is_alive() for t in threading.enumerate())


def test_a_failed_call_counts_as_an_error_of_an_unknown_version() -> None:
    # Given a request whose call itself fails
    client = FakeLambdaClient()
    traffic = TrafficGenerator(
        lambda_client=client,
        function_name="inference",
        qualifier="live",
        requests=[{"boom": True}],
        rate_per_second=500,
        max_requests=2,
    )

    # When it runs
    traffic.start()
    wait_until(lambda: traffic.sent == 2)
    traffic.stop()

    # Then the failures are counted, not lost
    assert traffic.stats == {UNKNOWN_VERSION: {"ok": 0, "error": 2}}


def test_stats_is_a_snapshot() -> None:
    client = FakeLambdaClient()
    traffic = TrafficGenerator(
        lambda_client=client,
        function_name="f",
        qualifier="live",
        requests=[{}],
        rate_per_second=500,
        max_requests=1,
    )
    traffic.start()
    wait_until(lambda: traffic.sent == 1)
    traffic.stop()

    snapshot = traffic.stats
    snapshot["1"]["ok"] = 99

    assert traffic.stats["1"]["ok"] == 1


@pytest.mark.parametrize(
    ("requests", "rate"),
    [([], 1.0), ([{}], 0.0), ([{}], -1.0)],
)
def test_rejects_no_requests_or_no_rate(requests: list[dict[str, Any]], rate: float) -> None:
    with pytest.raises(ValueError):
        TrafficGenerator(
            lambda_client=FakeLambdaClient(),
            function_name="f",
            qualifier="live",
            requests=requests,
            rate_per_second=rate,
        )


class SlowLambdaClient(FakeLambdaClient):
    """Every call takes 30 real ms (a handler on a busy machine); notes the clock's time at
    its start and end."""

    def __init__(self, clock: Any) -> None:
        super().__init__()
        self.clock = clock
        self.spans: list[tuple[float, float]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        began = self.clock.now()
        time.sleep(0.03)
        self.spans.append((began, self.clock.now()))
        return super().invoke(**kwargs)


def test_on_the_runtime_clock_the_rate_is_per_nominal_second_however_slow_the_calls() -> None:
    from modelgate_emulator.clock import LoadSafeClock

    # Given one request every 5 nominal seconds on a clock where a nominal second is 10
    # real ms, and calls that take 30 real ms each (3 nominal seconds if the clock ran on)
    clock = LoadSafeClock(0.01)
    client = SlowLambdaClient(clock)
    traffic = TrafficGenerator(
        lambda_client=client, function_name="inference", qualifier="live",
        requests=[{"q": "a"}], rate_per_second=0.2, clock=clock,
    )
    traffic.start()
    try:
        wait_until(lambda: traffic.sent >= 10)
    finally:
        traffic.stop()
    # Then each call cost no nominal time at all, and the next one came 5 nominal seconds
    # (or, on a busy machine, a little more) after the previous one ended
    spans = client.spans[:10]
    assert all(end == began for began, end in spans), spans
    assert min(b[0] - a[1] for a, b in itertools.pairwise(spans)) >= 5.0, spans


def test_on_the_runtime_clock_requests_go_out_at_exact_nominal_moments_and_stop_frees_the_clock() -> None:
    from modelgate_emulator.clock import LoadSafeClock

    # Given one request every 5 nominal seconds on a clock where a nominal second is 10 real
    # ms: real time the traffic thread spends between requests (scheduling, a busy machine)
    # would let nominal time run on, unless the next request's moment holds the clock
    clock = LoadSafeClock(0.01)
    client = SlowLambdaClient(clock)
    traffic = TrafficGenerator(
        lambda_client=client, function_name="inference", qualifier="live",
        requests=[{"q": "a"}], rate_per_second=0.2, clock=clock,
    )
    traffic.start()
    try:
        wait_until(lambda: traffic.sent >= 10)
    finally:
        traffic.stop()
    # Then request i went out at start + 5 i nominal seconds, exactly: a bake of N nominal
    # seconds sees N x rate requests, not fewer when the machine is busy
    starts = [began for began, _ in client.spans[:10]]
    assert [round(b - starts[0], 6) for b in starts] == [5.0 * i for i in range(10)], starts
    # And once stopped, the traffic holds the clock no more
    stopped_at = clock.now()
    wait_until(lambda: clock.now() > stopped_at + 10.0)
