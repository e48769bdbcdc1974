"""EventBridge delivery for the embedded AWS.

moto 5.2.1 ``Rule.send_to_targets`` (``moto/events/models.py``) gets these wrong; the
patch installed here fixes each (one test each):

- Lambda and Step Functions targets raise moto's not-implemented error (swallowed on the S3
  notification path): Lambda targets now go to ``invoke_async``, Step Functions targets
  start an execution named with a random uuid, as AWS names them. SQS targets are sent
  here too, so they get the same input shaping and retries.
- DISABLED rules still fire; now they don't.
- Schedule-only rules have an empty pattern, which moto matches against every event;
  now they never match bus events (AWS triggers them from the schedule alone).
- ``Input`` and ``InputPath`` are ignored and ``InputTransformer`` placeholders are pasted
  as text (a string outside quotes gives invalid JSON); now AWS's rules apply, see
  :func:`render_input_template`. Events from S3 skip transformation in moto; not here.
- One failing target stops delivery to the rule's later targets; each target is now on
  its own, and a failed delivery is retried per the target's ``RetryPolicy`` (default 185
  attempts / 24 h, as AWS) with exponential backoff, then sent to its ``DeadLetterConfig``
  SQS queue if any and logged as dropped: never lost silently.
- The event reaches targets with moto's unix ``time`` and internal ``ingestion-time``;
  Lambda, Step Functions and SQS targets get AWS's ISO ``time`` and no internal field.
- S3's "Object Created" events name a fixed ``requester`` (moto's default account) and
  source IP whoever uploads; with ``requester`` given, the event carries the caller's
  account ID (or the service principal) as AWS sends it: "requester – AWS account ID or
  AWS service principal of requester" ("EventBridge event message structure", Amazon S3
  User Guide, https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html), and a
  loopback source IP. It is never the principal's ARN: AWS doesn't send that.

Other target types (CloudWatch Logs, archives, buses, API destinations) still go through
moto's own code, one target at a time; a type moto lacks (SNS, ...) is logged, not raised.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.events.models import Rule

logger = logging.getLogger(__name__)

InvokeAsync = Callable[[str, bytes], None]
StartExecution = Callable[[str, str], None]
Sender = Callable[[dict[str, Any], bytes], None]  # (target, payload)
Authorize = Callable[[Rule, dict[str, Any]], None]  # raises when IAM refuses the delivery

DEFAULT_MAX_RETRY_ATTEMPTS = 185
DEFAULT_MAX_EVENT_AGE_SECONDS = 86_400
# Local backoff: AWS waits minutes between late retries; here a retry must not stall a test.
RETRY_BASE_DELAY_SECONDS = 0.02
RETRY_MAX_DELAY_SECONDS = 1.0

_MISSING = object()
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")
_PATH_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\[\*\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def install(
    *,
    invoke_async: InvokeAsync,
    start_execution: StartExecution | None = None,
    authorize: Authorize | None = None,
    requester: Callable[[], str] | None = None,
) -> Callable[[], None]:
    """Patch moto's rule delivery as described in the module docstring; returns ``uninstall``.

    ``invoke_async(function_arn, payload)`` runs a Lambda target (asynchronously, like an
    ``Event`` invocation); ``start_execution(state_machine_arn, input_json)`` starts a
    Step Functions target, by default through moto's Step Functions backend.
    ``authorize(rule, target)`` (IAM, see ``iam.authorize_event_target``) runs before each
    attempt; an exception it raises is a failed delivery (retried, then dead-lettered).
    ``requester()``: the calling principal's account ID or service principal, for S3's events
    (they are sent in the thread of the S3 call that caused them).
    """
    original = Rule.send_to_targets
    stopping = threading.Event()
    start = start_execution or _start_execution_in_moto
    senders: dict[str, Sender] = {
        "lambda": lambda target, body: invoke_async(target["Arn"], body),
        "states": lambda target, body: start(target["Arn"], body.decode()),
        "sqs": _send_to_sqs,
    }

    def send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
        if requester is not None and original_event.get("source") == "aws.s3":
            detail = original_event.get("detail")
            if isinstance(detail, dict) and "requester" in detail:
                detail["requester"] = requester()
                detail["source-ip-address"] = "127.0.0.1"
        if self.state != "ENABLED":
            return
        if not self.event_pattern.get_pattern():
            return  # schedule-only rule: never matched by events on the bus
        if not self.event_pattern.matches_event(original_event):
            return
        for target in list(self.targets):
            arn = str(target.get("Arn", ""))
            service = arn.split(":")[2] if arn.count(":") >= 5 else ""
            if service in senders:
                _Delivery(self, target, original_event, stopping, senders[service], authorize).run()
            else:
                single = copy.copy(self)
                single.targets = [target]
                try:
                    original(single, original_event, transform_input)
                except Exception:
                    logger.exception(
                        "event %s: rule %s could not deliver to target %s (not supported locally?)",
                        original_event.get("id"),
                        self.name,
                        arn,
                    )

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]

    def uninstall() -> None:
        stopping.set()  # pending retries give up (and say so)
        Rule.send_to_targets = original  # type: ignore[method-assign]

    return uninstall


class _Delivery:
    """One event to one target: first attempt inline, retries on a daemon thread."""

    def __init__(
        self,
        rule: Rule,
        target: dict[str, Any],
        moto_event: dict[str, Any],
        stopping: threading.Event,
        send: Sender,
        authorize: Authorize | None = None,
    ) -> None:
        self.rule = rule
        self.authorize = authorize
        self.target = copy.deepcopy(target)  # a retry must not see a later PutTargets
        self.event = aws_event(moto_event)
        ingestion = moto_event.get("ingestion-time")
        self.ingestion_time = (
            _iso(float(ingestion)) if isinstance(ingestion, (int, float)) else None
        )
        self.stopping = stopping
        self.send = send
        policy = target.get("RetryPolicy") or {}
        self.max_retries = int(policy.get("MaximumRetryAttempts", DEFAULT_MAX_RETRY_ATTEMPTS))
        self.max_age = float(policy.get("MaximumEventAgeInSeconds", DEFAULT_MAX_EVENT_AGE_SECONDS))
        self.born = time.monotonic()

    def run(self) -> None:
        try:
            payload = target_input(
                self.target,
                self.event,
                rule_arn=self.rule.arn,
                rule_name=self.rule.name,
                ingestion_time=self.ingestion_time,
            )
        except Exception as exc:  # a bad transformer is a delivery failure AWS doesn't retry
            self._give_up(exc, attempts=0)
            return
        error = self._attempt(payload)
        if error is None:
            return
        logger.warning(
            "event %s: rule %s -> %s failed (%s); retrying up to %d times",
            self.event.get("id"),
            self.rule.name,
            self.target.get("Arn"),
            error,
            self.max_retries,
        )
        if self.max_retries <= 0:
            self._give_up(error, attempts=1)
            return
        threading.Thread(
            target=self._retry, args=(payload,), name="modelgate-events-retry", daemon=True
        ).start()

    def _attempt(self, payload: bytes) -> Exception | None:
        try:
            if self.authorize is not None:
                self.authorize(self.rule, self.target)
            self.send(self.target, payload)
        except Exception as exc:
            return exc
        return None

    def _retry(self, payload: bytes) -> None:
        error: Exception | None = None
        attempts = 1
        for retry in range(1, self.max_retries + 1):
            delay = min(RETRY_MAX_DELAY_SECONDS, RETRY_BASE_DELAY_SECONDS * 2 ** (retry - 1))
            if self.stopping.wait(delay):
                logger.error(
                    "event %s: rule %s -> %s dropped: local runtime stopped during retries",
                    self.event.get("id"),
                    self.rule.name,
                    self.target.get("Arn"),
                )
                return
            if time.monotonic() - self.born > self.max_age:
                break
            attempts += 1
            error = self._attempt(payload)
            if error is None:
                logger.info("event %s: delivered on retry %d", self.event.get("id"), retry)
                return
            logger.debug("event %s: retry %d failed: %s", self.event.get("id"), retry, error)
        self._give_up(error, attempts=attempts)

    def _give_up(self, error: Exception | None, attempts: int) -> None:
        dlq = (self.target.get("DeadLetterConfig") or {}).get("Arn")
        logger.error(
            "event %s: rule %s -> %s DROPPED after %d attempt(s): %s%s",
            self.event.get("id"),
            self.rule.name,
            self.target.get("Arn"),
            attempts,
            error,
            f"; sent to dead-letter queue {dlq}" if dlq else "",
        )
        if dlq:
            _send_to_dead_letter_queue(
                dlq, self.event, self.rule.arn, str(self.target.get("Arn")), error
            )


# --------------------------------------------------------------------------- input


def aws_event(moto_event: dict[str, Any]) -> dict[str, Any]:
    """The event as AWS hands it to a target: ISO ``time``, no moto-internal fields."""
    event = {k: copy.deepcopy(v) for k, v in moto_event.items() if k != "ingestion-time"}
    when = event.get("time")
    if isinstance(when, (int, float)):
        event["time"] = _iso(float(when))
    elif isinstance(when, datetime):
        event["time"] = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def target_input(
    target: dict[str, Any],
    event: dict[str, Any],
    *,
    rule_arn: str,
    rule_name: str,
    ingestion_time: str | None = None,
) -> bytes:
    """The payload AWS sends to ``target`` for ``event``: Input, InputPath or InputTransformer."""
    if target.get("Input") is not None:
        return str(target["Input"]).encode()
    if target.get("InputPath"):
        found = json_path(event, str(target["InputPath"]))
        return json.dumps(None if found is _MISSING else found).encode()
    transformer = target.get("InputTransformer")
    if transformer:
        values: dict[str, Any] = {
            name: json_path(event, path)
            for name, path in (transformer.get("InputPathsMap") or {}).items()
        }
        values.update(
            {
                "aws.events.rule-arn": rule_arn,
                "aws.events.rule-name": rule_name,
                "aws.events.event.ingestion-time": ingestion_time or event.get("time"),
                "aws.events.event": {k: v for k, v in event.items() if k != "detail"},
                "aws.events.event.json": event,
            }
        )
        return render_input_template(str(transformer["InputTemplate"]), values).encode()
    return json.dumps(event).encode()


def render_input_template(template: str, values: dict[str, Any]) -> str:
    """Fill ``<name>`` placeholders as EventBridge does.

    In a JSON template (one starting with ``{`` or ``[``) a placeholder outside a string
    becomes the value's JSON (``"text"``, ``3``, ``{...}``, ``null`` when the path matched
    nothing) and one inside a string value is inserted raw (text without quotes, escaped
    only so the result stays valid JSON). Any other template is text: values go in raw.
    Placeholders with no value defined are left as they are.
    """
    json_mode = template.lstrip().startswith(("{", "["))
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(template):
        char = template[i]
        match = _PLACEHOLDER.match(template, i) if char == "<" else None
        if match and match.group(1) in values:
            out.append(
                _render_value(values[match.group(1)], json_mode=json_mode, in_string=in_string)
            )
            i = match.end()
            continue
        if json_mode and in_string and char == "\\":
            out.append(template[i : i + 2])
            i += 2
            continue
        if json_mode and char == '"':
            in_string = not in_string
        out.append(char)
        i += 1
    return "".join(out)


def _render_value(value: Any, *, json_mode: bool, in_string: bool) -> str:
    if json_mode and not in_string:
        return json.dumps(None if value is _MISSING else value)
    if value is _MISSING:
        return ""
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text)[1:-1] if json_mode else text


def json_path(document: Any, path: str) -> Any:
    """Evaluate EventBridge's JSONPath subset (``$.a.b``, ``$.a[0]``, ``$.a[*]``, ``$['k']``).

    Returns ``_MISSING`` when nothing matches; a wildcard returns the list of matches.
    """
    path = path.strip()
    if not path.startswith("$"):
        return _MISSING
    nodes: list[Any] = [document]
    rest, wildcard = path[1:], False
    while rest:
        match = _PATH_TOKEN.match(rest)
        if not match:
            return _MISSING
        key, index, quoted1, quoted2 = match.groups()
        name = key if key is not None else quoted1 if quoted1 is not None else quoted2
        nxt: list[Any] = []
        for node in nodes:
            if name == "*" or (name is None and index is None):
                wildcard = True
                nxt.extend(
                    node.values()
                    if isinstance(node, dict)
                    else node
                    if isinstance(node, list)
                    else []
                )
            elif name is not None and isinstance(node, dict) and name in node:
                nxt.append(node[name])
            elif index is not None and isinstance(node, list) and int(index) < len(node):
                nxt.append(node[int(index)])
        nodes, rest = nxt, rest[match.end() :]
    if wildcard:
        return nodes
    return nodes[0] if nodes else _MISSING


# --------------------------------------------------------------------------- targets


def _start_execution_in_moto(state_machine_arn: str, execution_input: str) -> None:
    from moto.stepfunctions.responses import get_backend

    _, _, _, region, account, *_ = state_machine_arn.split(":")
    get_backend(account, region).start_execution(
        state_machine_arn=state_machine_arn, name=str(uuid.uuid4()), execution_input=execution_input
    )


def _send_to_sqs(target: dict[str, Any], body: bytes) -> None:
    from moto.sqs.models import sqs_backends

    _, _, _, region, account, queue_name = str(target["Arn"]).split(":", 5)
    sqs_backends[account][region].send_message(
        queue_name=queue_name,
        message_body=body.decode(),
        group_id=(target.get("SqsParameters") or {}).get("MessageGroupId"),
    )


def _send_to_dead_letter_queue(
    queue_arn: str, event: dict[str, Any], rule_arn: str, target_arn: str, error: Exception | None
) -> None:
    from moto.sqs.models import sqs_backends

    _, _, _, region, account, queue_name = queue_arn.split(":", 5)
    attributes = {
        "RULE_ARN": rule_arn,
        "TARGET_ARN": target_arn,
        "ERROR_CODE": type(error).__name__ if error else "Unknown",
        "ERROR_MESSAGE": (str(error) or repr(error))[:256] if error else "Unknown",
    }
    try:
        sqs_backends[account][region].send_message(
            queue_name=queue_name,
            message_body=json.dumps(event),
            message_attributes={
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
            },
        )
    except Exception:
        logger.exception(
            "event %s: dead-letter queue %s unreachable too", event.get("id"), queue_arn
        )


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
