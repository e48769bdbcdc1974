"""The one place that builds Powertools' logger and metrics.

Correlation id = release id. Never log a task token: use ``redact_token``.
(X-Ray tracing is switched on for the functions in template.yaml; the Powertools tracer
is left out until the layer ships aws-xray-sdk.)
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service="modelgate")
metrics = Metrics(namespace="Modelgate", service="modelgate")


def redact_token(token: str | None) -> str:
    """What may be logged about a task token: that it exists, and its length."""
    return "<none>" if not token else f"<task-token len={len(token)}>"
