"""Inference function of a managed service (the sample: support-bot).

Thin on purpose: the settings (provider, artefact bucket) are validated first, the
environment of the published version pins the release, and modelgate.inference does the
work. Errors propagate unhandled so Lambda reports them (errorType = the exception's class
name) and the canary's Errors alarm sees them.

Every request, served or failed, prints one EMF document (modelgate.service_metrics): the
service's own metrics by service and version, the canary's high-resolution health signal
among them. A sampled share is captured to S3 when the service's monitoring policy says so
(modelgate.monitor.capture: buffered, one PutObject per batch). Neither may fail a request.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from modelgate import clock, inference, providers, refusal, service_metrics, settings
from modelgate.adapters import clients as aws
from modelgate.observability import logger
from modelgate.settings import InferenceSettings

CODE_ROOT = Path(__file__).resolve().parent  # the function's code (MODEL_BOOTSTRAP is a folder in it)
MANAGED_FUNCTION_INFIX = "-svc-"  # modelgate.policy.MANAGED_FUNCTION_INFIX (not imported: cold start)
_capture: Any = None  # (PolicyCache, CaptureBuffer) once a registration names a monitoring policy
refusal.compiled()  # every served request's answer is checked (the Refusals metric): at init, not on the first


@logger.inject_lambda_context(log_event=False)  # requests may carry customer text
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    response: dict[str, Any] | None = None
    config: InferenceSettings | None = None
    error: str | None = None
    try:
        config = settings.load(InferenceSettings)  # a deploy missing a variable fails here, naming it
        provider = providers.get_provider(config.provider)
        # this version's release; none: the bootstrap configuration bundled here, if any, else ModelNotConfigured
        response = inference.serve(event, config, os.environ, lambda: aws.client("s3"), provider, CODE_ROOT)
    except Exception as exc:
        error = type(exc).__name__
        raise
    finally:
        _observe(event, context, config, response, error, (time.perf_counter() - started) * 1000.0)
    logger.info(
        "request served",
        model_id=response["model_id"],
        commit=response["release"]["commit"],
        input_tokens=response["usage"]["input_tokens"],
        output_tokens=response["usage"]["output_tokens"],
        cost_usd=response["cost_usd"],
    )
    return response


def _observe(
    event: Any, context: Any, config: InferenceSettings | None, response: dict[str, Any] | None,
    error: str | None, latency_ms: float,
) -> None:
    """Metrics and capture of one request; a failure here is logged, never the request's."""
    try:
        function_name = str(getattr(context, "function_name", ""))
        service = function_name.split(MANAGED_FUNCTION_INFIX, 1)[-1] or "unknown"
        version = str(getattr(context, "function_version", "$LATEST"))
        try:
            monitoring = _monitoring(config)
        except Exception:  # noqa: BLE001 - a policy read that fails costs the capture, not the metrics
            logger.exception("monitoring policy not read: no capture or schema metric for this request")
            monitoring = None
        refused = schema_valid = None
        if response is not None:
            refused = refusal.is_refusal(str(response.get("output") or ""))
            if monitoring is not None and monitoring.output_schema is not None:
                schema_valid = service_metrics.schema_valid(str(response.get("output") or ""), monitoring.output_schema)
        now = clock.now()
        service_metrics.emit(service_metrics.request_document(
            service=service, version=version, when=now, latency_ms=latency_ms, failed=response is None,
            response=response, refusal=refused, schema_valid=schema_valid,
        ))
        if monitoring is not None and config is not None and _capture[1].sampled(monitoring.capture):
            from modelgate.monitor.capture import build_record

            record = build_record(
                monitoring.capture, service=service, version=version, when=now, event=event, response=response,
                latency_ms=latency_ms, refusal=refused, schema_valid=schema_valid, error=error,
            )
            _capture[1].add(monitoring.capture, record, aws.client("s3"), config.bucket, now)
    except Exception:  # noqa: BLE001 - observability must never fail or hide the request's own outcome
        logger.exception("request metrics or capture failed")


def _monitoring(config: InferenceSettings | None) -> Any:
    global _capture
    if config is None or config.registration is None:
        return None
    if _capture is None:
        from modelgate.monitor.capture import CaptureBuffer, PolicyCache

        _capture = (PolicyCache(), CaptureBuffer())
    return _capture[0].get(aws.client("ssm"), config.registration)
