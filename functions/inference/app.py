"""Inference function of a managed service (the sample: support-bot).

Thin on purpose: the settings (provider, artefact bucket) are validated first, the
environment of the published version pins the release, and modelgate.inference does the
work. Errors propagate unhandled so Lambda reports them (errorType = the exception's class
name) and the canary's Errors alarm sees them.

Every request, served or failed, prints one EMF document (modelgate.service_metrics):
the service's own metrics by service and version, the canary's high-resolution health
signal among them.
"""

from __future__ import annotations

import os
import time
from typing import Any

from modelgate import clock, inference, providers, service_metrics, settings
from modelgate.adapters import clients as aws
from modelgate.observability import logger
from modelgate.settings import InferenceSettings

MANAGED_FUNCTION_INFIX = "-svc-"  # modelgate.policy.MANAGED_FUNCTION_INFIX (not imported: cold start)


@logger.inject_lambda_context(log_event=False)  # requests may carry customer text
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    response: dict[str, Any] | None = None
    try:
        config = settings.load(InferenceSettings)  # a deploy missing a variable fails here, naming it
        pin = inference.read_pin(os.environ)  # this version's release; none: ModelNotConfigured
        provider = providers.get_provider(config.provider)
        response = inference.handle_request(event, config, pin, aws.client("s3"), provider)
    finally:
        _emit_metrics(context, response, (time.perf_counter() - started) * 1000.0)
    logger.info(
        "request served",
        model_id=response["model_id"],
        commit=response["release"]["commit"],
        input_tokens=response["usage"]["input_tokens"],
        output_tokens=response["usage"]["output_tokens"],
        cost_usd=response["cost_usd"],
    )
    return response


def _emit_metrics(context: Any, response: dict[str, Any] | None, latency_ms: float) -> None:
    function_name = str(getattr(context, "function_name", ""))
    service = function_name.split(MANAGED_FUNCTION_INFIX, 1)[-1] or "unknown"
    refusal = None
    if response is not None:
        from modelgate.evaluation.scorers import is_refusal

        refusal = is_refusal(str(response.get("output") or ""))
    document = service_metrics.request_document(
        service=service,
        version=str(getattr(context, "function_version", "$LATEST")),
        when=clock.now(),
        latency_ms=latency_ms,
        failed=response is None,
        response=response,
        refusal=refusal,
    )
    service_metrics.emit(document)
