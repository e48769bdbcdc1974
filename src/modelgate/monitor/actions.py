"""What a service's monitoring policy does when live is found wanting: ``act``.

Called by the scheduled re-evaluation (``reevaluation.py``), the model lifecycle watch
(``lifecycle.py``) and the drift check, each with what it found::

    act(deps, "drift", "support-bot", "PSI 0.31 on output length above 0.2", {"psi": {...}})

The service's policy (``monitoring.on_<trigger>``, ``policy.MonitoringPolicy``) names the
actions, run in its order; each is recorded in the monitoring journal (kind ``action``) with
its result, and a failed action does not stop the ones after it:

- ``alert``: an SNS message to the operations topic (``ALERT_TOPIC_ARN``) with the reason and
  the evidence, and message attributes ``service`` and ``trigger`` so a subscriber can filter
  on its services ("Amazon SNS message filtering",
  https://docs.aws.amazon.com/sns/latest/dg/sns-message-filtering.html);
- ``reevaluate``: the monitor function re-evaluates live now, asynchronously (Invoke with
  ``InvocationType`` ``Event``, "Invoke", AWS Lambda API Reference,
  https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html), which acts in turn on a
  regression per ``on_reevaluation_regression``;
- ``rollback``: live back to its last known good version through ``modelgate rollback``'s own
  path (``pipeline.outcome.rollback_service``: the service's lease, fenced alias move, the
  release recorded RolledBack, the approvers told). No known good version (live is a first
  release) is "refused", with the reason.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from modelgate.errors import DecisionConflict, ModelgateError, bounded
from modelgate.monitor.journal import Journal
from modelgate.monitor.policy import TRIGGERS, Trigger
from modelgate.observability import logger
from modelgate.pipeline.deps import Deps
from modelgate.policy import managed_function_prefix
from modelgate.registry import get_service
from modelgate.text import one_line

ACTOR = "modelgate-monitor"
MAX_EVIDENCE_CHARS = 8_000  # in the alert and the journal: an SNS message is at most 256 KB


def act(deps: Deps, trigger: Trigger, service: str, reason: str, evidence: dict[str, Any] | None = None) -> list[dict]:
    """Run the service's policy's actions for ``trigger``; returns one result per action
    (``{"action", "status": "done" | "refused" | "failed", "detail", ...}``), each also in the
    monitoring journal. ``evidence``: JSON-able numbers behind ``reason`` (shown in the alert,
    kept in the journal). ``deps.settings`` is a ``settings.MonitorSettings``."""
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown monitoring trigger {trigger!r}: one of {', '.join(TRIGGERS)}")
    config = get_service(
        deps.ssm, deps.settings.services_prefix, service, function_prefix=managed_function_prefix(deps.settings.stack_name)
    )
    evidence = evidence or {}
    journal = Journal(deps.ledger.table)
    results = []
    for action in config.policy.monitoring.actions_for(trigger):
        try:
            result = _ACTIONS[action](deps, trigger, service, reason, evidence)
        except DecisionConflict as exc:
            result = {"status": "refused", "detail": str(exc)}
        except Exception as exc:  # noqa: BLE001 - recorded and logged; the next action still runs
            logger.exception("monitoring action failed", action=action, managed_service=service, trigger=trigger)
            result = {"status": "failed", "detail": bounded(f"{type(exc).__name__}: {exc}", 2_000)}
        result = {"action": action, **result}
        journal.append(
            service, "action", f"{action} on {trigger}: {result['status']}: {result['detail']}",
            trigger=trigger, reason=bounded(reason, 4_000), **result,
        )
        results.append(result)
    return results


def _evidence_text(evidence: dict[str, Any]) -> str:
    return bounded(json.dumps(evidence, indent=2, sort_keys=True, default=str), MAX_EVIDENCE_CHARS)


def _alert(deps: Deps, trigger: Trigger, service: str, reason: str, evidence: dict[str, Any]) -> dict:
    response = deps.sns.publish(
        TopicArn=deps.settings.alert_topic_arn,
        Subject=f"Modelgate: {service}: {trigger.replace('_', ' ')}"[:100],
        # one line for the reason: text in it can't forge another line of the message
        Message=f"{service}: {one_line(reason, 4000)}\n\nEvidence:\n{_evidence_text(evidence)}",
        MessageAttributes={
            "service": {"DataType": "String", "StringValue": service},
            "trigger": {"DataType": "String", "StringValue": trigger},
        },
    )
    return {"status": "done", "detail": "operations topic alerted", "message_id": response.get("MessageId")}


def _reevaluate(deps: Deps, trigger: Trigger, service: str, reason: str, evidence: dict[str, Any]) -> dict:
    function = deps.settings.monitor_function_name
    payload = {"task": "reevaluate", "service": service, "requested_by": trigger, "reason": bounded(reason, 2_000)}
    deps.lambda_.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode())
    return {"status": "done", "detail": f"re-evaluation of live requested ({function}, asynchronous)"}


def _rollback(deps: Deps, trigger: Trigger, service: str, reason: str, evidence: dict[str, Any]) -> dict:
    # The release pipeline's outcome code (the ledger chain, the lease, fencing, the model
    # registry) is loaded by the one action that uses it: the drift check and the monitor's
    # checks start without it (issue #7, cold start).
    from modelgate.pipeline.outcome import rollback_service
    from modelgate.pipeline.revocation import request_revocation

    done = rollback_service(deps, service, actor=f"{ACTOR} ({trigger})", comment=one_line(reason, 2000),
                            kind="monitoring policy rollback", error="MonitorRollback")
    # the rolled-back release's attestation must stop a downstream stage: the stack's signer revokes
    # it (pipeline/revocation.py); a failure leaves the rollback done and says so (`modelgate revoke`)
    try:
        revoked = request_revocation(deps.lambda_, deps.settings.attest_function_name, service, done["release_id"])
        revocation = "revoked" if revoked.get("revoked") else f"nothing to revoke ({revoked.get('why')})"
    except (ModelgateError, ClientError) as exc:
        logger.warning("the rolled-back release was not revoked", release_id=done["release_id"], error=str(exc))
        revocation = f"NOT revoked ({exc}): run modelgate revoke {done['release_id']}"
    return {
        "status": "done",
        "detail": f"live rolled back from version {done['from_version']} to {done['to_version']} "
        f"(release {done['release_id']} is {done['status']}; {revocation})",
        "revocation": revocation,
        "from_version": done["from_version"],
        "to_version": done["to_version"],
        "release_id": done["release_id"],
    }


_ACTIONS = {"alert": _alert, "reevaluate": _reevaluate, "rollback": _rollback}
