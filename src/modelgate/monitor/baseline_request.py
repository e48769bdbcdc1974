"""Promote's request for the promoted version's drift baseline (``monitor.baseline`` builds it).

Promote asks the monitor function, asynchronously (Invoke with ``InvocationType`` ``Event``,
"Invoking a Lambda function asynchronously", AWS Lambda Developer Guide,
https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html), with a
:class:`BaselineRequest`; the monitor validates the same model as its event and builds the
baseline (``monitor.baseline.build_for_release``). Apart from the building module, so that
Promote's and the monitor's other tasks' cold start skip the drift profile's models (issue #7).
"""

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelgate.errors import ModelgateError, bounded


class BaselineUnavailable(ModelgateError):
    """A baseline can't be built or read (its sources unreadable or over their caps, a request
    that doesn't match the release)."""


class BaselineRequest(BaseModel):
    """What Promote hands the monitor function (task ``baseline``) to build a baseline from.

    ``canary_started_at`` .. ``promoted_at``: the canary's window on the pipeline's clock (the
    captured records of ``version`` in it are the baseline's production traffic); ``promoted_at``
    is also the baseline's ``created_at``, so a rebuild from the same inputs writes the same bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    release_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")  # an execution name
    version: str = Field(pattern=r"^[0-9]{1,10}$")  # a published Lambda version
    report_key: str = Field(min_length=1, max_length=1024)
    report_version: str | None = Field(default=None, max_length=1024)
    canary_started_at: datetime | None = None
    promoted_at: datetime


def request_baseline(deps: Any, ctx: Any, promoted_at: datetime) -> dict[str, Any]:
    """Promote's last step: ask the monitor function (``deps.settings.monitor_function_name``)
    to build the promoted version's baseline, asynchronously. Returns the ledger fields set.

    Never raises (the version is live already): a request that could not be made is recorded
    in the ledger (``baseline_error``) and the drift check says "insufficient" for this version.
    """
    from modelgate.ledger import now_iso
    from modelgate.observability import logger

    try:
        if ctx.evaluation is None or ctx.candidate_version is None:
            raise BaselineUnavailable("the release carries no evaluation summary or candidate version")
        request = BaselineRequest(
            release_id=ctx.release_id, version=ctx.candidate_version, report_key=ctx.evaluation.report_key,
            report_version=ctx.evaluation.report_version,
            canary_started_at=datetime.fromisoformat(ctx.canary_started_at) if ctx.canary_started_at else None,
            promoted_at=promoted_at,
        )
        payload = {"task": "baseline", "service": ctx.service, "requested_by": "promote",
                   "baseline": request.model_dump(mode="json")}
        function = deps.settings.monitor_function_name
        deps.lambda_.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode())
        fields: dict[str, Any] = {"baseline_requested_at": now_iso()}
    except Exception as exc:  # noqa: BLE001 - the version is live; a baseline not asked for is recorded, not raised
        logger.exception("baseline not requested", extra={"release_id": ctx.release_id})
        fields = {"baseline_key": None, "baseline_error": bounded(f"not requested: {type(exc).__name__}: {exc}", 1_000)}
    deps.ledger.set_fields(ctx.release_id, **fields)
    return fields
