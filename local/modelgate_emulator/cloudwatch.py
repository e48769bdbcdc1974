"""CloudWatch for the embedded AWS: Lambda metrics, alarm evaluation, alarm events.

moto 5.2.1 (``moto/cloudwatch/models.py``) stores metrics and alarms but leaves out what
the release pipeline relies on. This module covers, each with a test:

- Lambda invocations put no ``AWS/Lambda`` metrics          -> :func:`emit_lambda_metrics`
  (``ExecutedVersion`` only for calls through a weighted alias: :func:`lambda_datums`)
- no alarm is ever evaluated from its datapoints            -> :class:`AlarmEvaluator`
- a state change emits no "CloudWatch Alarm State Change"   -> :func:`put_alarm_state_change_event`
- ``SetAlarmState`` emits no event either                   -> :func:`install`
- a new alarm starts in ``OK``; AWS starts it in ``INSUFFICIENT_DATA`` -> :func:`install`
- ``GetMetricStatistics`` matches dimensions as a subset, so a ``[FunctionName]`` query
  also sums the ``[FunctionName, Resource]`` datapoints; AWS matches the exact set
                                                            -> :func:`install`
- ``Dimension.__lt__`` is not an order, so ``GetMetricData`` misses a query whose
  dimensions are listed in another order than the datapoints' -> :func:`install`
- ``GetMetricData`` computes no percentile (``Stat: p95`` gives no value, and the
  response fails); AWS computes percentiles from the raw datapoints -> :func:`install`

AWS timing, on the runtime's clock (``modelgate_emulator.clock``, nominal time):

- Lambda metrics arrive late: "Lambda sends metric data to CloudWatch in 1-minute
  intervals" ("Using CloudWatch metrics with Lambda",
  https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html). A datapoint is
  timestamped when its invocation ran and becomes readable (GetMetricData,
  GetMetricStatistics, ListMetrics, alarms) ``metrics_delay_seconds`` later (default 60 s,
  nominal)                                                  -> :class:`LambdaMetricsPublisher`
- alarms evaluate whole periods aligned to the clock, once per period boundary (a 60 s
  alarm at hh:mm:00 evaluates the periods that ended then), as CloudWatch does ("Using
  Amazon CloudWatch alarms", "Evaluating an alarm",
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html)
                                                            -> :class:`AlarmEvaluator`
Alarm actions (SNS, Auto Scaling) are not run: the pipeline listens on EventBridge.
"""

from __future__ import annotations

import bisect
import heapq
import json
import logging
import math
import operator
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.cloudwatch.models import (
    Alarm,
    CloudWatchBackend,
    Dimension,
    MetricAggregatedDatum,
    MetricDatum,
    MetricDatumBase,
    Statistics,
    cloudwatch_backends,
    daterange,
)

from modelgate_emulator.background import BackgroundLoop
from modelgate_emulator.clock import Clock, JumpingClock, ScaledClock

logger = logging.getLogger(__name__)

LAMBDA_NAMESPACE = "AWS/Lambda"
DEFAULT_METRICS_DELAY_SECONDS = 60.0  # nominal; Lambda sends metrics in 1-minute intervals
# AWS fetches more periods than EvaluationPeriods to cope with missing data (its
# missing-data table evaluates "3 out of 3" over 5 periods); we look back this many more.
EXTRA_RANGE_PERIODS = 2
ALARM_PERIOD_GRID_SECONDS = 10.0  # every valid alarm Period (10, 20, 30, n x 60 s) is a multiple
_EPOCH = datetime(1970, 1, 1)
_OPERATORS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
SeriesKey = tuple[str, str, frozenset[tuple[str | None, str | None]]]


# --------------------------------------------------------------------------- metrics


def emit_lambda_metrics(
    *,
    account_id: str,
    region: str,
    function_name: str,
    resource: str | None,
    executed_version: str,
    duration_ms: float,
    error: bool,
    timestamp: datetime | None = None,
    weighted_alias: bool = False,
) -> None:
    """Record one invocation's Invocations, Errors and Duration as AWS Lambda does, now.

    Dimension sets: see :func:`lambda_datums` (``weighted_alias``: the call went through an
    alias whose routing configuration has an additional version). ``Errors`` is sent as 0
    on success so its Average is an error rate. Written straight into moto's backend: one
    call per invocation must stay cheap. :class:`LambdaMetricsPublisher` adds AWS's
    publication delay in front of this.
    """
    backend = cloudwatch_backends[account_id][region]
    backend.metric_data.extend(
        lambda_datums(
            function_name=function_name,
            resource=resource,
            executed_version=executed_version,
            duration_ms=duration_ms,
            error=error,
            when=_naive_utc(timestamp) if timestamp else _utcnow(),
            weighted_alias=weighted_alias,
        )
    )


def lambda_datums(
    *,
    function_name: str,
    resource: str | None,
    executed_version: str,
    duration_ms: float,
    error: bool,
    when: datetime,
    weighted_alias: bool = False,
) -> list[MetricDatum]:
    """The datums of one invocation, in the dimension sets AWS documents for it.

    - none (account-wide) and ``[FunctionName]``: every invocation;
    - ``[FunctionName, Resource]`` when the call was qualified (``resource`` is
      ``"fn:alias"`` or ``"fn:version"``): "Resource - View metrics for a version or alias
      of a function";
    - ``[FunctionName, Resource, ExecutedVersion]`` only when the call went through a
      *weighted* alias (``weighted_alias``: its routing configuration names an additional
      version). That is the one case AWS documents: "Use the ExecutedVersion dimension to
      compare error rates for two versions of a function that are both targets of a
      weighted alias" ("Viewing metrics for Lambda functions", dimensions,
      https://docs.aws.amazon.com/lambda/latest/dg/monitoring-functions-metrics.html), and
      "When you configure traffic weights between two function versions ... For alias
      invocations, Lambda uses the ExecutedVersion dimension to filter the metric data by the
      invoked version" ("Implement Lambda canary deployments using a weighted alias",
      https://docs.aws.amazon.com/lambda/latest/dg/configuring-alias-routing.html). Whether
      AWS publishes it for an unweighted alias is not documented, so the embedded AWS does
      not: code that watches ``ExecutedVersion`` there would pass here and go blind on AWS.
    """
    dimension_sets: list[list[dict[str, str]]] = [
        [],
        [{"Name": "FunctionName", "Value": function_name}],
    ]
    if resource:
        qualified = [*dimension_sets[1], {"Name": "Resource", "Value": resource}]
        dimension_sets.append(qualified)
        if weighted_alias and _is_alias(resource):
            dimension_sets.append(
                [*qualified, {"Name": "ExecutedVersion", "Value": executed_version}]
            )
    values = (
        ("Invocations", 1.0, "Count"),
        ("Errors", 1.0 if error else 0.0, "Count"),
        ("Duration", float(duration_ms), "Milliseconds"),
    )
    return [
        MetricDatum(LAMBDA_NAMESPACE, name, value, dimensions, when, unit)
        for dimensions in dimension_sets
        for name, value, unit in values
    ]


class LambdaMetricsPublisher:
    """The runtime's metrics sink: AWS/Lambda datapoints on the clock, published late.

    Each invocation's datums are timestamped with the clock's nominal time and held until
    ``delay_seconds`` (nominal) have passed; every read of CloudWatch (and every alarm
    evaluation) first publishes what is due (see the module docstring for the AWS source).
    ``install()`` registers it with the read path; ``uninstall()`` drops what is pending.
    """

    def __init__(self, clock: Clock, *, delay_seconds: float = DEFAULT_METRICS_DELAY_SECONDS) -> None:
        if delay_seconds < 0:
            raise ValueError(f"delay_seconds must be >= 0, got {delay_seconds}")
        self.clock = clock
        self.delay_seconds = float(delay_seconds)
        self._lock = threading.Lock()
        self._pending: list[tuple[float, int, str, str, list[MetricDatum]]] = []  # a heap
        self._sequence = 0

    def __call__(
        self,
        *,
        account_id: str,
        region: str,
        function_name: str,
        resource: str | None,
        executed_version: str,
        duration_ms: float,
        error: bool,
        timestamp: datetime | None = None,
        weighted_alias: bool = False,
    ) -> None:
        # ``timestamp`` (the real start time) is ignored: nominal time is the clock's.
        now = self.clock.now()
        datums = lambda_datums(
            function_name=function_name,
            resource=resource,
            executed_version=executed_version,
            duration_ms=duration_ms,
            error=error,
            when=_from_epoch(now),
            weighted_alias=weighted_alias,
        )
        with self._lock:
            self._sequence += 1
            heapq.heappush(self._pending, (now + self.delay_seconds, self._sequence, account_id, region, datums))
        if self.delay_seconds == 0:
            self.publish_due()

    def put_datums(
        self, account_id: str, region: str, datums: list[MetricDatum], *, delay_seconds: float
    ) -> None:
        """Other datapoints on the same clock, readable ``delay_seconds`` (nominal) from now:
        metrics extracted from EMF log events (``emf.py``, its own delay), keeping their timestamps."""
        if delay_seconds < 0:
            raise ValueError(f"delay_seconds must be >= 0, got {delay_seconds}")
        with self._lock:
            self._sequence += 1
            heapq.heappush(self._pending, (self.clock.now() + delay_seconds, self._sequence, account_id, region, datums))
        if delay_seconds == 0:
            self.publish_due()

    def publish_due(self) -> int:
        """Move every datapoint whose delay has passed into CloudWatch; how many."""
        now = self.clock.now()
        moved = 0
        with self._lock:
            while self._pending and self._pending[0][0] <= now:
                _, _, account_id, region, datums = heapq.heappop(self._pending)
                cloudwatch_backends[account_id][region].metric_data.extend(datums)
                moved += len(datums)
        return moved

    def pending(self) -> int:
        with self._lock:
            return sum(len(entry[4]) for entry in self._pending)

    def install(self) -> Callable[[], None]:
        with _PUBLISHERS_LOCK:
            _PUBLISHERS.append(self)

        def uninstall() -> None:
            with _PUBLISHERS_LOCK:
                if self in _PUBLISHERS:
                    _PUBLISHERS.remove(self)
            with self._lock:
                self._pending.clear()

        return uninstall


_PUBLISHERS: list[LambdaMetricsPublisher] = []
_PUBLISHERS_LOCK = threading.Lock()


def publish_due_metrics() -> None:
    """Publish every installed publisher's due datapoints (before any CloudWatch read)."""
    with _PUBLISHERS_LOCK:
        publishers = list(_PUBLISHERS)
    for publisher in publishers:
        publisher.publish_due()


def _is_alias(resource: str) -> bool:
    qualifier = resource.rsplit(":", 1)[1] if ":" in resource else ""
    return bool(qualifier) and qualifier != "$LATEST" and not qualifier.isdigit()


# --------------------------------------------------------------------------- events


def put_alarm_state_change_event(
    *,
    account_id: str,
    region: str,
    alarm: Alarm,
    old_state: str,
    new_state: str,
    reason: str,
    now: float | None = None,
) -> dict[str, Any]:
    """Send the "CloudWatch Alarm State Change" event for ``alarm`` to the default bus.

    Call it after the alarm's state was updated: ``state`` is read from the alarm,
    ``previousState`` from its last history entry. The event goes through moto's rules,
    so patterns match it and targets receive it (Lambda and Step Functions targets need
    :func:`modelgate_emulator.events.install`). ``now``: the event's time (epoch seconds;
    the clock's nominal time when the evaluator sends it). Returns the event as delivered.
    """
    now = time.time() if now is None else now
    event: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": account_id,
        "time": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [alarm.alarm_arn],
        "detail": {
            "alarmName": alarm.name,
            "state": _state_block(
                new_state, reason, alarm.state_reason_data, alarm.state_updated_timestamp
            ),
            "previousState": _previous_state_block(alarm, old_state),
            "configuration": _configuration_block(alarm),
        },
    }
    from moto.events.models import events_backends

    bus = events_backends[account_id][region].event_buses["default"]
    for rule in list(bus.rules.values()):
        # moto's internal event carries a unix "time" and an "ingestion-time".
        internal = {**json.loads(json.dumps(event)), "time": now, "ingestion-time": now}
        try:
            rule.send_to_targets(internal)  # type: ignore[arg-type]
        except Exception:  # AWS delivers to every rule; one failing target must not stop the rest
            logger.exception(
                "alarm event %s: delivery through rule %s failed", event["id"], rule.name
            )
    return event


def _state_block(
    value: str, reason: str, reason_data: str | None, when: datetime
) -> dict[str, Any]:
    block: dict[str, Any] = {"value": value, "reason": reason}
    if reason_data and reason_data != "{}":
        block["reasonData"] = reason_data
    block["timestamp"] = _aws_millis(when)
    return block


def _previous_state_block(alarm: Alarm, old_state: str) -> dict[str, Any]:
    updates = [h for h in alarm.history if h and h[0] == "StateUpdate"]
    if updates and updates[-1][3] == old_state:
        _, reason, reason_data, value, when = updates[-1]
        return _state_block(value, reason, reason_data, when)
    return {
        "value": old_state,
        "reason": "",
        "timestamp": _aws_millis(alarm.state_updated_timestamp),
    }


def _configuration_block(alarm: Alarm) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if alarm.description:
        config["description"] = alarm.description
    metrics: list[dict[str, Any]] = []
    if alarm.metric_name:
        stat: dict[str, Any] = {
            "metric": {
                "dimensions": {d.name: d.value for d in alarm.dimensions},
                "name": alarm.metric_name,
                "namespace": alarm.namespace,
            },
            "period": int(alarm.period),
            "stat": alarm.statistic or alarm.extended_statistic,
        }
        if alarm.unit:
            stat["unit"] = alarm.unit
        metrics.append({"id": _metric_id(alarm), "metricStat": stat, "returnData": True})
    for query in alarm.metric_data_queries:
        entry: dict[str, Any] = {
            "id": query.id,
            "returnData": query.return_data in (None, True, "true"),
        }
        if query.label:
            entry["label"] = query.label
        if query.expression:
            entry["expression"] = query.expression
        if query.metric_stat:
            ms = query.metric_stat
            entry["metricStat"] = {
                "metric": {
                    "dimensions": {d.name: d.value for d in ms.metric.dimensions},
                    "name": ms.metric.metric_name,
                    "namespace": ms.metric.namespace,
                },
                "period": int(ms.period),
                "stat": ms.stat,
            }
        metrics.append(entry)
    config["metrics"] = metrics
    return config


def _metric_id(alarm: Alarm) -> str:
    # AWS shows a stable opaque id for a single-metric alarm; derive one from the ARN.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, alarm.alarm_arn))


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class StateChange:
    """One alarm transition made by :meth:`AlarmEvaluator.evaluate_once`."""

    alarm_name: str
    old_state: str
    new_state: str
    reason: str
    event: dict[str, Any]


@dataclass(frozen=True)
class _Query:
    """What an alarm watches, resolved from either its single metric or one MetricStat."""

    key: SeriesKey
    stat: str
    period: int
    unit: str | None
    evaluation_periods: int
    datapoints_to_alarm: int


@dataclass(frozen=True)
class _Window:
    start: float
    value: float | None  # None: no datapoint in this period (missing)
    samples: float


class _SeriesIndex:
    """Per-series, time-sorted view of moto's append-only ``metric_data`` list.

    Scanning every datum for every alarm on every tick gets slow under live traffic
    (three metrics x four dimension sets per invocation), so only new datums are indexed.
    """

    def __init__(self) -> None:
        self._backend: CloudWatchBackend | None = None
        self._seen = 0
        self._series: dict[SeriesKey, tuple[list[float], list[MetricDatumBase]]] = {}

    def refresh(self, backend: CloudWatchBackend) -> None:
        data = backend.metric_data
        if backend is not self._backend or len(data) < self._seen:
            self._backend, self._seen, self._series = backend, 0, {}
        new = data[self._seen :]
        self._seen += len(new)
        for datum in new:
            times, items = self._series.setdefault(_series_key(datum), ([], []))
            at = _epoch(datum.timestamp)
            pos = bisect.bisect_right(times, at)
            times.insert(pos, at)
            items.insert(pos, datum)

    def between(self, key: SeriesKey, start: float, end: float) -> list[MetricDatumBase]:
        times, items = self._series.get(key, ([], []))
        return items[bisect.bisect_left(times, start) : bisect.bisect_left(times, end)]


class AlarmEvaluator(BackgroundLoop):
    """Evaluates every metric alarm of one account/region from its stored datapoints.

    Semantics follow AWS: exact namespace/metric/dimension-set match; Statistic or
    ExtendedStatistic (pNN); whole periods aligned to the clock (multiples of Period since
    the epoch, in nominal time), evaluated once each time a period boundary passes, over
    the periods that ended there; DatapointsToAlarm (default EvaluationPeriods);
    ComparisonOperator; TreatMissingData: with at least EvaluationPeriods real datapoints
    in the evaluation range the most recent ones decide, otherwise the missing ones are
    filled as the alarm says (``missing`` with no data at all -> INSUFFICIENT_DATA;
    ``ignore`` keeps the state). Datapoints still in flight (see
    :class:`LambdaMetricsPublisher`) are not there yet: a period evaluated before its
    metrics arrived is missing, as on AWS. A transition updates the alarm as AWS does and
    emits the state change event. Composite alarms, anomaly-detection operators and metric
    math are left alone.

    ``clock``: the runtime's clock; ``time_factor`` builds a :class:`ScaledClock` instead.
    ``tick_seconds``: how often (real seconds) the thread looks for a passed boundary.
    """

    thread_name = "modelgate-alarm-evaluator"

    def __init__(
        self,
        *,
        account_id: str,
        region: str,
        clock: Clock | None = None,
        time_factor: float | None = None,
        tick_seconds: float = 0.05,
    ) -> None:
        if (clock is None) == (time_factor is None):
            raise ValueError("pass either clock or time_factor")
        if tick_seconds <= 0 or (time_factor is not None and time_factor <= 0):
            raise ValueError("time_factor and tick_seconds must be positive")
        self.account_id = account_id
        self.region = region
        self.clock: Clock = clock if clock is not None else ScaledClock(float(time_factor or 1.0))
        self.tick_seconds = tick_seconds
        self._index = _SeriesIndex()
        self._lock = threading.Lock()
        self._init_loop()
        self._evaluated: dict[str, tuple[int, float]] = {}  # alarm -> (id of its object, boundary)

    def _run(self) -> None:
        """Evaluate at every period boundary. On a clock with barriers (LoadSafeClock) the
        next boundary is a barrier: nominal time waits there until it was evaluated, so a
        late-scheduled thread never lets a bake end past an alarm it should have seen."""
        barrier: int | None = None
        try:
            while not self._stopping.is_set():
                try:
                    self.evaluate_once()
                except Exception:  # one bad tick must not end alarm evaluation for the run
                    logger.exception("alarm evaluation failed")
                now = self.clock.now()
                jumping = isinstance(self.clock, JumpingClock)
                upcoming = self._next_boundary(now, any_alarm=jumping)
                set_barrier = getattr(self.clock, "barrier", None)
                if set_barrier is not None:
                    previous, barrier = barrier, set_barrier(upcoming)
                    if previous is not None:
                        self.clock.clear(previous)  # type: ignore[attr-defined]
                if jumping:
                    # Idle on the clock until the boundary: the clock may jump there.
                    self.clock.wait_for_moment(self._stopping, upcoming)
                else:
                    pause = min(self.tick_seconds, max(self.clock.real_seconds(upcoming - now), 0.002))
                    self._stopping.wait(pause)
        finally:
            if barrier is not None:
                self.clock.clear(barrier)  # type: ignore[attr-defined]

    def _next_boundary(self, now: float, *, any_alarm: bool = False) -> float:
        """The next period boundary of any alarm (every minute when there is none).

        ``any_alarm``: the next boundary any alarm could have, including one created while
        the evaluator waits (a JumpingClock jumps to the boundary it waits for, so it must
        not wait past one). An alarm's Period is 10, 20, 30 or a multiple of 60 s
        ("PutMetricAlarm", Amazon CloudWatch API Reference,
        https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html),
        so every boundary lies on the 10 s grid.
        """
        if any_alarm:
            return (math.floor(now / ALARM_PERIOD_GRID_SECONDS) + 1) * ALARM_PERIOD_GRID_SECONDS
        backend = cloudwatch_backends[self.account_id][self.region]
        periods = {q.period for q in map(_alarm_query, list(backend.alarms.values())) if q is not None} or {60}
        return min((math.floor(now / p) + 1) * p for p in periods)

    def evaluate_once(self) -> list[StateChange]:
        """Evaluate each metric alarm whose period boundary passed since it was last
        evaluated (a new alarm: at once, on the periods that ended at the last boundary);
        apply and return the state changes."""
        with self._lock:
            publish_due_metrics()
            backend = cloudwatch_backends[self.account_id][self.region]
            self._index.refresh(backend)
            now = self.clock.now()
            changes = []
            alarms = list(backend.alarms.values())
            for name in set(self._evaluated) - {a.name for a in alarms}:
                del self._evaluated[name]
            for alarm in alarms:
                change = self._evaluate(alarm, now)
                if change:
                    changes.append(change)
            return changes

    def _evaluate(self, alarm: Alarm, now: float) -> StateChange | None:
        query = _alarm_query(alarm)
        if query is None:
            return None
        span = float(query.period)
        boundary = math.floor(now / span) * span
        seen = self._evaluated.get(alarm.name)
        if seen is not None and seen[0] == id(alarm) and seen[1] >= boundary:
            return None  # this period boundary was evaluated already
        self._evaluated[alarm.name] = (id(alarm), boundary)
        windows = []
        for i in range(query.evaluation_periods + EXTRA_RANGE_PERIODS):
            start = boundary - (i + 1) * span
            data = self._index.between(query.key, start, start + span)
            if query.unit:
                data = [d for d in data if d.unit == query.unit]
            windows.append(_Window(start, _statistic(query.stat, data), _sample_count(data)))
        outcome = _decide(alarm, query, windows, now)
        if outcome is None or outcome[0] == alarm.state_value:
            return None
        new_state, reason, reason_data = outcome
        old_state = alarm.state_value
        alarm.update_state(reason, reason_data, new_state)
        event = put_alarm_state_change_event(
            account_id=self.account_id,
            region=self.region,
            alarm=alarm,
            old_state=old_state,
            new_state=new_state,
            reason=reason,
            now=now,
        )
        logger.info("alarm %s: %s -> %s: %s", alarm.name, old_state, new_state, reason)
        return StateChange(alarm.name, old_state, new_state, reason, event)


def _alarm_query(alarm: Alarm) -> _Query | None:
    if alarm.rule is not None or alarm.comparison_operator not in _OPERATORS:
        return None
    stat: str
    period: int | str | None
    unit: str | None
    if alarm.metric_name:
        key = (alarm.namespace, alarm.metric_name, _dims_key(alarm.dimensions))
        stat, period, unit = (
            alarm.statistic or alarm.extended_statistic or "",
            alarm.period,
            alarm.unit,
        )
    else:
        queries = alarm.metric_data_queries
        if len(queries) != 1 or queries[0].metric_stat is None or queries[0].expression:
            return None
        ms = queries[0].metric_stat
        key = (ms.metric.namespace, ms.metric.metric_name, _dims_key(ms.metric.dimensions))
        stat, period, unit = ms.stat, ms.period, ms.unit
    if not period or int(period) <= 0 or not _supported(stat):
        return None
    evaluation_periods = max(1, int(alarm.evaluation_periods))
    to_alarm = int(alarm.datapoints_to_alarm or evaluation_periods)
    return _Query(
        key, stat, int(period), unit, evaluation_periods, min(to_alarm, evaluation_periods)
    )


def _decide(
    alarm: Alarm, query: _Query, windows: list[_Window], now: float
) -> tuple[str, str, str] | None:
    """New (state, reason, reason data) per AWS's alarm rules, or None to keep the state."""
    n, m = query.evaluation_periods, query.datapoints_to_alarm
    compare, phrase = _OPERATORS[alarm.comparison_operator]
    threshold = float(alarm.threshold)
    treat = alarm.treat_missing_data or "missing"
    real = [w for w in windows if w.value is not None]
    evaluated = real[:n]
    filled = n - len(evaluated)
    breaching = sum(1 for w in evaluated if w.value is not None and compare(w.value, threshold))
    data = _reason_data(query, threshold, evaluated or windows[:n], now)
    if not evaluated:
        if treat == "ignore":
            return None
        if treat in ("breaching", "notBreaching"):
            label = "Breaching" if treat == "breaching" else "NonBreaching"
            reason = (
                f"Threshold Crossed: no datapoints were received for {_n(n, 'period')} and "
                f"{_n(n, 'missing datapoint')} {_was(n)} treated as [{label}]."
            )
            return ("ALARM" if treat == "breaching" else "OK"), reason, data
        return (
            "INSUFFICIENT_DATA",
            f"Insufficient Data: {_n(n, 'datapoint')} {_was(n)} unknown.",
            data,
        )
    if filled and treat in ("missing", "ignore"):
        # Too few real datapoints: they decide alone (AWS's missing-data table; "ignore"
        # then keeps the current state rather than going to ALARM).
        to_alarm = breaching >= min(m, len(evaluated))
        if to_alarm and treat == "ignore":
            return None
    else:
        to_alarm = breaching + (filled if treat == "breaching" else 0) >= m
    points = ", ".join(f"{w.value!r} ({_reason_time(w.start)})" for w in evaluated)
    shown = len(evaluated)
    old = alarm.state_value
    if to_alarm:
        reason = (
            f"Threshold Crossed: {breaching} out of the last {shown} datapoints [{points}] "
            f"{_was(breaching)} {phrase} the threshold ({threshold!r}) "
            f"(minimum {_n(m, 'datapoint')} for {old} -> ALARM transition)."
        )
        new_state = "ALARM"
    else:
        fine = shown - breaching
        reason = (
            f"Threshold Crossed: {fine} out of the last {shown} datapoints [{points}] "
            f"{_was(fine)} not {phrase} the threshold ({threshold!r}) "
            f"(minimum {_n(n - m + 1, 'datapoint')} for {old} -> OK transition)."
        )
        new_state = "OK"
    if filled and treat in ("breaching", "notBreaching"):
        label = "Breaching" if treat == "breaching" else "NonBreaching"
        reason += f" {_n(filled, 'missing datapoint')} {_was(filled)} treated as [{label}]."
    return new_state, reason, data


def _reason_data(query: _Query, threshold: float, windows: list[_Window], now: float) -> str:
    stat_key = "extendedStatistic" if query.stat.startswith("p") else "statistic"
    payload: dict[str, Any] = {
        "version": "1.0",
        "queryDate": _aws_millis(_from_epoch(now)),
        "startDate": _aws_millis(_from_epoch(min(w.start for w in windows))),
        stat_key: query.stat,
        "period": query.period,
        "recentDatapoints": [w.value for w in reversed(windows) if w.value is not None],
        "threshold": threshold,
        "evaluatedDatapoints": [
            {
                "timestamp": _aws_millis(_from_epoch(w.start)),
                "sampleCount": w.samples,
                "value": w.value,
            }
            for w in windows
            if w.value is not None
        ],
    }
    return json.dumps(payload, separators=(",", ":"))


# --------------------------------------------------------------------------- statistics

_BASIC_STATS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")


def _supported(stat: str) -> bool:
    return stat in _BASIC_STATS or _percentile(stat) is not None


def _statistic(stat: str, data: Sequence[MetricDatumBase]) -> float | None:
    """The statistic (a supported one) over ``data``; None when there is no datapoint."""
    percentile = _percentile(stat)
    if not data:
        return None
    if stat == "SampleCount":
        return _sample_count(data)
    if percentile is not None:
        # Aggregated datums (StatisticValues) only carry their average for percentiles.
        values = sorted(_expanded_values(data))
        rank = max(1, math.ceil(percentile / 100 * len(values)))
        return values[rank - 1]
    stats = Statistics([stat], _utcnow())
    stats.metric_data = list(data)
    value = stats.get_statistics_for_type(stat)
    return None if value is None else float(value)


def _percentile(stat: str) -> float | None:
    if not stat.startswith("p"):
        return None
    try:
        value = float(stat[1:])
    except ValueError:
        return None
    return value if 0 < value <= 100 else None


def _sample_count(data: Sequence[MetricDatumBase]) -> float:
    return float(sum(d.sample_count if isinstance(d, MetricAggregatedDatum) else 1 for d in data))


def _expanded_values(data: Sequence[MetricDatumBase]) -> list[float]:
    values: list[float] = []
    for d in data:
        if isinstance(d, MetricDatum):
            values.append(float(d.value))
        elif isinstance(d, MetricAggregatedDatum) and d.sample_count:
            values.extend([d.sum / d.sample_count] * max(1, int(d.sample_count)))
    return values


# --------------------------------------------------------------------------- patches


def install() -> Callable[[], None]:
    """Patch moto's CloudWatch as described in the module docstring; returns ``uninstall``.

    Patches stack: ``uninstall`` restores exactly what this call replaced.
    """
    originals = {
        (CloudWatchBackend, "set_alarm_state"): CloudWatchBackend.set_alarm_state,
        (CloudWatchBackend, "get_metric_statistics"): CloudWatchBackend.get_metric_statistics,
        (CloudWatchBackend, "get_all_metrics"): CloudWatchBackend.get_all_metrics,
        (Alarm, "__init__"): Alarm.__init__,
        (Dimension, "__lt__"): Dimension.__lt__,
        (CloudWatchBackend, "get_metric_data"): CloudWatchBackend.get_metric_data,
    }
    original_set_state = CloudWatchBackend.set_alarm_state
    original_alarm_init = Alarm.__init__

    def set_alarm_state(
        self: CloudWatchBackend, alarm_name: str, reason: str, reason_data: str, state_value: str
    ) -> None:
        alarm = self.alarms.get(alarm_name)
        old_state = alarm.state_value if alarm else None
        original_set_state(self, alarm_name, reason, reason_data, state_value)
        # AWS emits the event (and runs actions) only when the state really changes.
        if alarm is not None and old_state != state_value:
            put_alarm_state_change_event(
                account_id=self.account_id,
                region=self.region_name,
                alarm=alarm,
                old_state=old_state or "INSUFFICIENT_DATA",
                new_state=state_value,
                reason=reason,
            )

    def alarm_init(self: Alarm, *args: Any, **kwargs: Any) -> None:
        original_alarm_init(self, *args, **kwargs)
        self.state_value = "INSUFFICIENT_DATA"

    def dimension_lt(self: Dimension, other: Dimension) -> bool:
        return (self.name or "", self.value or "") < (other.name or "", other.value or "")

    original_get_all_metrics = CloudWatchBackend.get_all_metrics

    def get_all_metrics(self: CloudWatchBackend) -> list[MetricDatumBase]:
        publish_due_metrics()  # late Lambda metrics that have arrived by now
        return original_get_all_metrics(self)

    CloudWatchBackend.set_alarm_state = set_alarm_state  # type: ignore[method-assign]
    CloudWatchBackend.get_all_metrics = get_all_metrics  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_statistics = _get_metric_statistics_exact  # type: ignore[method-assign]
    Alarm.__init__ = alarm_init  # type: ignore[method-assign]
    Dimension.__lt__ = dimension_lt  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_data = _percentile_aware(CloudWatchBackend.get_metric_data)  # type: ignore[method-assign]

    def uninstall() -> None:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)

    return uninstall


def _get_metric_statistics_exact(
    self: CloudWatchBackend,
    namespace: str,
    metric_name: str,
    start_time: datetime,
    end_time: datetime,
    period: int,
    stats: list[str],
    dimensions: list[dict[str, str]],
    unit: str | None = None,
) -> list[Statistics]:
    """moto's GetMetricStatistics with AWS's exact dimension-set match (see docstring)."""
    from moto.cloudwatch.exceptions import InvalidParameterValue

    start_time = _naive_utc(start_time).replace(microsecond=0)
    end_time = _naive_utc(end_time).replace(microsecond=0)
    if start_time >= end_time:
        raise InvalidParameterValue(
            "The parameter StartTime must be less than the parameter EndTime."
        )
    wanted = frozenset((d["Name"], d.get("Value")) for d in dimensions or [])
    data = sorted(
        (
            md
            for md in self.get_all_metrics()
            if md.namespace == namespace
            and md.name == metric_name
            and start_time <= md.timestamp < end_time
            and (unit is None or md.unit == unit)
            and _dims_key(md.dimensions) == wanted
        ),
        key=lambda md: md.timestamp,
    )
    if not data:
        return []
    step = timedelta(seconds=period)
    result: list[Statistics] = []
    idx = 0
    for dt in daterange(data[0].timestamp, data[-1].timestamp + step, step):
        bucket = Statistics(stats, dt)
        while idx < len(data) and data[idx].timestamp < dt + step:
            bucket.metric_data.append(data[idx])
            bucket.unit = data[idx].unit
            idx += 1
        if bucket.metric_data:
            result.append(bucket)
    return result


def _percentile_aware(original: Callable[..., list[dict[str, Any]]]) -> Callable[..., list[dict[str, Any]]]:
    """moto's GetMetricData, with percentile ``Stat`` values (``p95``, ``p99.9``) computed
    from the period's raw datapoints, as AWS does ("CloudWatch needs raw data points to
    calculate percentile statistics", GetMetricStatistics in the CloudWatch API Reference:
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricStatistics.html).

    moto runs the query with ``SampleCount`` in its place (so the periods with data and
    their timestamps are moto's own); each value is then replaced by the percentile of the
    datapoints of that period whose dimension set is exactly the query's.
    """

    def get_metric_data(
        self: CloudWatchBackend,
        queries: list[dict[str, Any]],
        start_time: datetime,
        end_time: datetime,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        percentiles = {
            q["Id"]: q for q in queries if "MetricStat" in q and _percentile(q["MetricStat"]["Stat"]) is not None
        }
        if not percentiles:
            return original(self, queries, start_time, end_time, scan_by)
        counted = [
            {**q, "MetricStat": {**q["MetricStat"], "Stat": "SampleCount"}} if q["Id"] in percentiles else q
            for q in queries
        ]
        results = original(self, counted, start_time, end_time, scan_by)
        for result in results:
            query = percentiles.get(result["id"])
            if query is None:
                continue
            stat = query["MetricStat"]
            metric = stat["Metric"]
            wanted = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
            step = timedelta(seconds=int(stat["Period"]))
            data = sorted(
                (
                    md
                    for md in self.get_all_metrics()
                    if md.namespace == metric["Namespace"]
                    and md.name == metric["MetricName"]
                    and _dims_key(md.dimensions) == wanted
                    and (not stat.get("Unit") or md.unit == stat["Unit"])
                ),
                key=operator.attrgetter("timestamp"),
            )
            # each period's datapoints by bisection: a scan of every datapoint per period made a
            # long bake's CheckCanary (hundreds of periods, thousands of datapoints) cost seconds
            times = [md.timestamp for md in data]
            result["values"] = [
                _statistic(stat["Stat"], data[bisect.bisect_left(times, at) : bisect.bisect_left(times, at + step)])
                for at in result["timestamps"]
            ]
            if not query.get("Label"):
                result["label"] = f"{metric['MetricName']} {stat['Stat']}"
        return results

    return get_metric_data


# --------------------------------------------------------------------------- helpers


def _series_key(datum: MetricDatumBase) -> SeriesKey:
    return (datum.namespace, datum.name, _dims_key(datum.dimensions))


def _dims_key(dimensions: Sequence[Dimension]) -> frozenset[tuple[str | None, str | None]]:
    return frozenset((d.name, d.value) for d in dimensions)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _epoch(value: datetime) -> float:
    return (_naive_utc(value) - _EPOCH).total_seconds()


def _from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)


def _aws_millis(value: datetime) -> str:
    """AWS alarm timestamps: ``2019-10-01T13:56:40.987+0000``."""
    return _naive_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _reason_time(start: float) -> str:
    return _from_epoch(start).strftime("%d/%m/%y %H:%M:%S")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _was(count: int) -> str:
    return "was" if count == 1 else "were"
