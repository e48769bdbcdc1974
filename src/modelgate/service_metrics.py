"""The managed service's own metrics, per request, as CloudWatch embedded metric format (EMF).

One EMF document per request, printed to stdout: on Lambda, CloudWatch Logs extracts the
metrics from the function's log group ("Specification: Embedded metric format",
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html),
so a request pays no PutMetricData call. Built with Powertools Metrics' EMF provider, a
fresh metric set per request (Powertools' ``Metrics`` shares its set across instances, and
the embedded AWS runs several invocations in one process at once).

Namespace ``Modelgate/Service``, dimensions ``[service, version]`` (version: the Lambda
version that ran, ``context.function_version``, so a canary's metrics are the candidate's
alone whether or not the alias is weighted; no documentation caveat as for
``ExecutedVersion``):

=================  ============  ==========  ===============================================
metric             unit          resolution  value
=================  ============  ==========  ===============================================
Requests           Count         1 s         1 per request (served or failed)
Failures           Count         1 s         1 when the request failed, else 0: the canary's
                                             health signal; high resolution (StorageResolution
                                             1), so an alarm may use a 10 s period
Latency            Milliseconds  1 s         the handler's time for this request
InputTokens        Count         60 s        model input tokens
OutputTokens       Count         60 s        model output tokens
Cost               None          60 s        USD (pricing.py)
Refusals           Count         60 s        1 when the answer declines (refusal.is_refusal)
OutputLength       Count         60 s        characters of the answer
SchemaValid        Count         60 s        1/0: the answer is JSON valid against the
                                             service's declared output schema (only then)
=================  ============  ==========  ===============================================

Token, cost, refusal and length metrics exist only for served requests.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricResolution, MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

NAMESPACE = "Modelgate/Service"
HEALTH_METRIC = "Failures"
LATENCY_METRIC = "Latency"
DIMENSIONS = ("service", "version")


def dimensions(service: str, version: str) -> list[dict[str, str]]:
    """The dimension set every service metric carries (for alarms and queries)."""
    return [{"Name": "service", "Value": service}, {"Name": "version", "Value": version}]


def request_document(
    *,
    service: str,
    version: str,
    when: datetime,
    latency_ms: float,
    failed: bool,
    response: dict[str, Any] | None = None,
    refusal: bool | None = None,
    schema_valid: bool | None = None,
) -> dict[str, Any]:
    """The EMF document of one request (``response``: what the service answered, if it did)."""
    emf = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, metric_set={}, dimension_set={}, metadata_set={})
    emf.add_dimension(name="service", value=service)
    emf.add_dimension(name="version", value=version)
    high = MetricResolution.High
    emf.add_metric(name="Requests", unit=MetricUnit.Count, value=1, resolution=high)
    emf.add_metric(name=HEALTH_METRIC, unit=MetricUnit.Count, value=1 if failed else 0, resolution=high)
    emf.add_metric(name=LATENCY_METRIC, unit=MetricUnit.Milliseconds, value=max(0.0, latency_ms), resolution=high)
    if response is not None:
        usage = response.get("usage") or {}
        emf.add_metric(name="InputTokens", unit=MetricUnit.Count, value=int(usage.get("input_tokens", 0)))
        emf.add_metric(name="OutputTokens", unit=MetricUnit.Count, value=int(usage.get("output_tokens", 0)))
        if response.get("cost_usd") is not None:
            emf.add_metric(name="Cost", unit=MetricUnit.NoUnit, value=float(response["cost_usd"]))
        emf.add_metric(name="OutputLength", unit=MetricUnit.Count, value=len(str(response.get("output") or "")))
        if refusal is not None:
            emf.add_metric(name="Refusals", unit=MetricUnit.Count, value=1 if refusal else 0)
        if schema_valid is not None:
            emf.add_metric(name="SchemaValid", unit=MetricUnit.Count, value=1 if schema_valid else 0)
    # The request's time on the pipeline clock (modelgate.clock: the wall clock on AWS). Set
    # as the attribute set_timestamp would set: its check warns when the embedded AWS's
    # scaled clock is more than two hours ahead of the wall clock, which CloudWatch would
    # refuse on AWS but the embedded CloudWatch, on that clock, must accept.
    emf.timestamp = int(when.timestamp() * 1000)
    return emf.serialize_metric_set()


def emit(document: dict[str, Any]) -> None:
    """Write the document as one log line, in one write (CloudWatch Logs extracts it)."""
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def schema_valid(output: str, schema: dict[str, Any]) -> bool:
    """Whether ``output`` is JSON valid against ``schema`` (a JSON Schema object)."""
    import jsonschema  # the layer ships it; imported on first use (cold start)

    try:
        value = json.loads(output)
    except ValueError:
        return False
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)
    return validator.is_valid(value)
