"""Live traffic for the demo: steady invocations of an alias while a canary bakes.

A canary alarm can only fire from real errors of the candidate, so the demo needs callers
on the ``live`` alias while the pipeline shifts weight. This sends the given requests
cyclically at a fixed rate through a Lambda client (embedded runtime or real AWS alike)
and counts outcomes per executed version, read from ``ExecutedVersion`` (the
``X-Amz-Executed-Version`` header), so the demo can show which version served what.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

UNKNOWN_VERSION = "unknown"  # the call itself failed, or the response named no version


class TrafficGenerator:
    """Invokes ``function_name:qualifier`` at ``rate_per_second`` on a daemon thread.

    ``stats`` maps executed version -> ``{"ok": n, "error": n}``; an invocation counts
    as an error when the response carries ``FunctionError`` or the call raised.

    ``clock`` (the embedded AWS's clock, ``LocalAWS.clock``): the rate is per *nominal*
    second, the pacing waits on that clock, the clock stands still while a request is in
    flight and does not pass the next request's moment before it was sent, so a bake of N
    nominal seconds sees N x rate requests however slow the machine is. Without it: real
    seconds (a real AWS account).
    """

    def __init__(
        self,
        *,
        lambda_client: Any,
        function_name: str,
        qualifier: str,
        requests: list[dict[str, Any]],
        rate_per_second: float,
        max_requests: int | None = None,
        clock: Any = None,
    ) -> None:
        if not requests:
            raise ValueError("requests must not be empty")
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self._client = lambda_client
        self._function_name = function_name
        self._qualifier = qualifier
        self._payloads = [json.dumps(request) for request in requests]
        self._interval = 1.0 / rate_per_second
        self._max_requests = max_requests
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}
        self._sent = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """A snapshot: ``{version: {"ok": n, "error": n}}``."""
        with self._lock:
            return {version: dict(counts) for version, counts in self._counts.items()}

    @property
    def sent(self) -> int:
        with self._lock:
            return self._sent

    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="modelgate-traffic", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop sending and wait for the in-flight invocation to finish."""
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None

    def _run(self) -> None:
        if self._clock is not None:
            self._run_on_clock(self._clock)
            return
        next_at = time.monotonic()
        index = 0
        while not self._stopping.is_set():
            if self._max_requests is not None and index >= self._max_requests:
                return
            self._send(self._payloads[index % len(self._payloads)])
            index += 1
            next_at += self._interval
            now = time.monotonic()
            if next_at < now - 1.0:  # fell far behind (slow handler): don't burst to catch up
                next_at = now
            self._stopping.wait(max(0.0, next_at - now))

    def _run_on_clock(self, clock: Any) -> None:
        """Request ``i`` goes out at nominal ``start + i / rate``, exactly. A request in flight
        holds the clock (it costs no nominal time), and on a clock with barriers (the runtime's
        LoadSafeClock) the next request's moment is a barrier: nominal time waits there until
        this thread sent it. Without it a thread scheduled late on a busy machine let nominal
        time run on between requests, so a bake saw fewer requests than its nominal length
        promises (the demo's judge then saw too few failing requests to roll v5 back)."""
        set_barrier = getattr(clock, "barrier", None)
        barrier = None
        index = 0
        due: float | None = None
        try:
            while not self._stopping.is_set():
                if self._max_requests is not None and index >= self._max_requests:
                    return
                with clock.hold():  # a request in flight costs no nominal time
                    if due is None:
                        due = clock.now()  # the first request's moment: the others follow at the rate
                    self._send(self._payloads[index % len(self._payloads)])
                index += 1
                due += self._interval
                if set_barrier is not None:  # the new barrier first: time never slips past `due`
                    previous, barrier = barrier, set_barrier(due)
                    if previous is not None:
                        clock.clear(previous)
                clock.wait_for_moment(self._stopping, due)
        finally:
            if barrier is not None:
                clock.clear(barrier)

    def _send(self, payload: str) -> None:
        try:
            response = self._client.invoke(
                FunctionName=self._function_name, Qualifier=self._qualifier, Payload=payload
            )
        except Exception as exc:
            logger.warning(
                "traffic: invoke %s:%s failed: %s", self._function_name, self._qualifier, exc
            )
            self._record(UNKNOWN_VERSION, ok=False)
            return
        body = response.get("Payload")
        if hasattr(body, "read"):
            body.read()  # release the stream, as a real caller would
        version = str(response.get("ExecutedVersion") or UNKNOWN_VERSION)
        self._record(version, ok="FunctionError" not in response)

    def _record(self, version: str, *, ok: bool) -> None:
        with self._lock:
            counts = self._counts.setdefault(version, {"ok": 0, "error": 0})
            counts["ok" if ok else "error"] += 1
            self._sent += 1
