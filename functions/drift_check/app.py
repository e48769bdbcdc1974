"""DriftCheck: one service's captured live traffic against its promotion baseline.

Invoked by EventBridge Scheduler (one schedule per service, template.yaml) with
``{"service": NAME}``; the work is modelgate.monitor.check.run.
"""

from __future__ import annotations

from typing import Any

from modelgate.monitor import check
from modelgate.observability import logger
from modelgate.pipeline.deps import default_deps
from modelgate.policy import ServiceConfig
from modelgate.settings import DriftCheckSettings

# Every check reads the service's registration (registry.get_service), a model the handlers that
# import it without validating it build on first use (defer_build): built here, at init.
ServiceConfig.model_rebuild()


@logger.inject_lambda_context(log_event=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    service = event.get("service") if isinstance(event, dict) else None
    if not isinstance(service, str) or not service:
        raise ValueError(f'the drift check needs {{"service": "<name>"}}, got {str(event)[:200]}')
    deps = default_deps(DriftCheckSettings)
    result = check.run(deps, service, monitor_function_name=deps.settings.monitor_function_name)
    logger.info("drift check done", service=service, verdict=result.get("verdict", "skipped"),
                summary=result.get("summary") or result.get("skipped"))
    return result
