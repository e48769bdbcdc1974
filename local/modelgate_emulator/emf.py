"""CloudWatch Logs' embedded metric format (EMF): metrics extracted from log lines, as on AWS.

On AWS, CloudWatch Logs turns a log event that is an EMF document into metric datapoints
("Specification: Embedded metric format", Amazon CloudWatch User Guide,
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
What this module follows from that specification:

- the log event's message is one JSON object with nothing before or after it, whose root
  holds ``_aws`` with ``Timestamp`` (milliseconds since the epoch) and ``CloudWatchMetrics``:
  a list of MetricDirectives, each with ``Namespace``, ``Dimensions`` (a list of
  DimensionSets: lists of up to 30 member names whose values are strings in the root) and
  ``Metrics`` (up to 100 MetricDefinitions: ``Name``, optional ``Unit``, optional
  ``StorageResolution`` 1 or 60, default 60);
- every name a directive references (each metric, each dimension) must be a member of the
  root; a metric's value is a number or an array of up to 100 numbers (one datapoint each);
- each DimensionSet becomes its own metric (the same values, one series per set).

A document that breaks the specification yields no metrics (AWS counts it in the
``AWS/Logs`` ``EMFValidationErrors`` metric; here it is logged at warning).

Timing. A metric with ``StorageResolution`` 60 (standard resolution) is stored at one-minute
granularity ("Resolution": "Standard resolution, with data having a one-minute granularity",
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_concepts.html#Resolution_definition),
so its datapoints are timestamped at the start of their minute: an alarm with a 10 s period
on it sees data in one 10 s window a minute and is mostly missing, as AWS warns for
PutMetricAlarm's ``Period``. ``StorageResolution`` 1 keeps the second. Extraction follows the
log events' delivery: the Lambda service ships a function's output as it is written; AWS
recommends flushing EMF logs "at an interval of 5 seconds or less" for high-resolution alarms
("Setting alarms on metrics created with the embedded metric format",
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Alarms.html),
so the embedded AWS makes extracted datapoints readable :data:`DEFAULT_EMF_DELAY_SECONDS`
(nominal) after their invocation ends.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import MetricDatum

LOG = logging.getLogger(__name__)

DEFAULT_EMF_DELAY_SECONDS = 5.0
MAX_DIMENSIONS_PER_SET = 30
MAX_METRICS_PER_DIRECTIVE = 100
MAX_VALUES_PER_METRIC = 100
HIGH_RESOLUTION = 1
STANDARD_RESOLUTION = 60


class EmfInvalid(ValueError):
    """A log event that looks like EMF (it has ``_aws``) but breaks the specification."""


def is_candidate(message: str) -> bool:
    """Cheap pre-check: a JSON object mentioning ``_aws`` (most log lines are not)."""
    text = message.strip()
    return text.startswith("{") and text.endswith("}") and '"_aws"' in text


def parse(message: str) -> list[MetricDatum]:
    """The datapoints one EMF log event carries. Raises ``EmfInvalid`` naming the problem;
    a message that is not JSON or has no ``_aws`` member is not EMF: no datapoints."""
    try:
        root = json.loads(message)
    except ValueError:
        return []
    if not isinstance(root, dict) or "_aws" not in root:
        return []
    meta = root["_aws"]
    if not isinstance(meta, dict):
        raise EmfInvalid("_aws must be an object")
    stamp = meta.get("Timestamp")
    if not isinstance(stamp, int | float) or isinstance(stamp, bool) or stamp < 0:
        raise EmfInvalid(f"_aws.Timestamp must be a number of milliseconds since the epoch, got {stamp!r}")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        raise EmfInvalid("_aws.CloudWatchMetrics must be a list of MetricDirectives")
    when = datetime.fromtimestamp(stamp / 1000.0, UTC).replace(tzinfo=None)  # moto keeps naive UTC
    datums: list[MetricDatum] = []
    for d, directive in enumerate(directives):
        datums += _directive(root, directive, when, f"CloudWatchMetrics[{d}]")
    return datums


def _directive(root: dict[str, Any], directive: Any, when: datetime, where: str) -> list[MetricDatum]:
    if not isinstance(directive, dict):
        raise EmfInvalid(f"{where} must be an object")
    namespace = directive.get("Namespace")
    if not isinstance(namespace, str) or not namespace or namespace.startswith("AWS/"):
        raise EmfInvalid(f"{where}.Namespace must be a non-empty string outside AWS/, got {namespace!r}")
    sets = directive.get("Dimensions")
    if not isinstance(sets, list):
        raise EmfInvalid(f"{where}.Dimensions must be a list of DimensionSets")
    metrics = directive.get("Metrics")
    if not isinstance(metrics, list) or not 1 <= len(metrics) <= MAX_METRICS_PER_DIRECTIVE:
        raise EmfInvalid(f"{where}.Metrics must list 1 to {MAX_METRICS_PER_DIRECTIVE} MetricDefinitions")
    dimension_sets: list[list[dict[str, str]]] = []
    for s, names in enumerate(sets):
        if not isinstance(names, list) or len(names) > MAX_DIMENSIONS_PER_SET:
            raise EmfInvalid(f"{where}.Dimensions[{s}] must be a list of at most {MAX_DIMENSIONS_PER_SET} names")
        dims = []
        for name in names:
            value = root.get(name) if isinstance(name, str) else None
            if not isinstance(value, str):
                raise EmfInvalid(f"{where}: dimension {name!r} has no string value in the root")
            dims.append({"Name": name, "Value": value})
        dimension_sets.append(dims)
    if not dimension_sets:
        dimension_sets = [[]]
    datums: list[MetricDatum] = []
    for m, definition in enumerate(metrics):
        if not isinstance(definition, dict) or not isinstance(definition.get("Name"), str):
            raise EmfInvalid(f"{where}.Metrics[{m}] must be an object with a Name")
        name = definition["Name"]
        resolution = definition.get("StorageResolution", STANDARD_RESOLUTION)
        if resolution not in (HIGH_RESOLUTION, STANDARD_RESOLUTION):
            raise EmfInvalid(f"metric {name!r}: StorageResolution must be 1 or 60, got {resolution!r}")
        values = _values(root.get(name, _MISSING), name)
        stamp = when if resolution == HIGH_RESOLUTION else when.replace(second=0, microsecond=0)
        unit = definition.get("Unit") or "None"
        for dims in dimension_sets:
            datums += [MetricDatum(namespace, name, v, dims, stamp, unit) for v in values]
    return datums


_MISSING = object()


def _values(value: Any, name: str) -> list[float]:
    if value is _MISSING:
        raise EmfInvalid(f"metric {name!r} is referenced but not a member of the root")
    values = value if isinstance(value, list) else [value]
    if len(values) > MAX_VALUES_PER_METRIC:
        raise EmfInvalid(f"metric {name!r} has {len(values)} values (at most {MAX_VALUES_PER_METRIC})")
    out = []
    for v in values:
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise EmfInvalid(f"metric {name!r}: value {v!r} is not a finite number")
        out.append(float(v))
    return out


def extract(events: list[dict[str, Any]]) -> list[MetricDatum]:
    """Every datapoint in a batch of log events (invalid documents are logged and skipped)."""
    datums: list[MetricDatum] = []
    for event in events:
        message = str(event.get("message", ""))
        if not is_candidate(message):
            continue
        try:
            datums += parse(message)
        except EmfInvalid as exc:
            LOG.warning("EMF log event rejected (EMFValidationErrors): %s", exc)
    return datums


EmfSink = Callable[[str, str, list[MetricDatum]], None]
