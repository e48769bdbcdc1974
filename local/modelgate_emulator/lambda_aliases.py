"""Lambda aliases as AWS updates them: a RevisionId that changes on every update and that
UpdateAlias can be made conditional on; and what the embedded AWS saw (every UpdateAlias,
with its weights) for tests to read, with a hook to make an update slow.

moto 5.2.1 gives an alias a RevisionId when it is created and never changes it, and its
UpdateAlias ignores the ``RevisionId`` parameter ("The RevisionId parameter is not yet
implemented", ``moto/awslambda/models.py``). AWS documents both:

- ``RevisionId`` of an alias: "A unique identifier that changes when you update the alias"
  (AliasConfiguration, https://docs.aws.amazon.com/lambda/latest/api/API_AliasConfiguration.html).
- UpdateAlias ``RevisionId``: "Only update the alias if the revision ID matches the ID that's
  specified. Use this option to avoid modifying an alias that has changed since you last read
  it." A mismatch fails with ``PreconditionFailedException`` (HTTP 412): "The RevisionId
  provided does not match the latest RevisionId for the Lambda function or alias. Call the
  GetFunction or the GetAlias API operation to retrieve the latest RevisionId for your
  resource." (https://docs.aws.amazon.com/lambda/latest/api/API_UpdateAlias.html, Request
  Body and Errors.)

Here every accepted UpdateAlias gives the alias a new RevisionId (also one that sets the same
configuration again: AWS documents no exception for a no-op update, and code that relies on a
no-op update *not* changing it would be relying on the undocumented). The check and the
update happen under one lock per alias, so they are atomic against a concurrent UpdateAlias,
as a conditional update must be.

What the embedded AWS adds for tests (:class:`AliasRecorder`):

- ``updates(function_name, alias)``: every UpdateAlias the embedded AWS answered, in order,
  accepted or refused (a stale RevisionId), each with the version and weights it asked for
  and the revision it set.
- ``add_hook(hook)``: ``hook(update, phase)`` runs in the caller's thread for each UpdateAlias,
  with ``phase`` "before" (the request has arrived; nothing checked or applied yet) and
  "after" (applied or refused; the response not yet sent). A hook that waits makes the update
  slow at that point: "before" is an update that AWS applies late, "after" one that is
  applied at once but answered late. A hook runs outside the alias's lock, so other updates
  proceed meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal
from unittest import mock
from urllib.parse import unquote

Phase = Literal["before", "after"]


@dataclasses.dataclass(frozen=True)
class AliasUpdate:
    """One UpdateAlias the embedded AWS answered."""

    function_name: str
    alias: str
    function_version: str | None  # as asked (None: unchanged)
    weights: dict[str, float] | None  # AdditionalVersionWeights as asked (None: routing unchanged)
    expected_revision: str | None  # the request's RevisionId (None: unconditional)
    accepted: bool | None  # None while the update is in flight ("before")
    revision: str | None  # the alias's RevisionId after the update (None if refused or in flight)
    thread: str  # the caller's thread name (which handler sent it)
    at: float  # real epoch seconds when it arrived (the ledger's timestamps are real time too)


AliasHook = Callable[[AliasUpdate, Phase], None]


class AliasRecorder:
    """What the embedded AWS saw of UpdateAlias, and the hooks that run on each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._updates: list[AliasUpdate] = []
        self._hooks: list[AliasHook] = []
        self._alias_locks: dict[str, threading.Lock] = {}

    def updates(self, function_name: str | None = None, alias: str | None = None) -> list[AliasUpdate]:
        """Every answered UpdateAlias (of that function / alias when given), in order."""
        with self._lock:
            return [
                u
                for u in self._updates
                if (function_name is None or u.function_name == function_name) and (alias is None or u.alias == alias)
            ]

    def add_hook(self, hook: AliasHook) -> Callable[[], None]:
        """Run ``hook`` on every UpdateAlias (see the module docstring); returns its remover."""
        with self._lock:
            self._hooks.append(hook)

        def remove() -> None:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)

        return remove

    def _run_hooks(self, update: AliasUpdate, phase: Phase) -> None:
        with self._lock:
            hooks = list(self._hooks)
        for hook in hooks:
            hook(update, phase)

    def _alias_lock(self, arn: str) -> threading.Lock:
        with self._lock:
            return self._alias_locks.setdefault(arn, threading.Lock())

    def _record(self, update: AliasUpdate) -> None:
        with self._lock:
            self._updates.append(update)


def _weights(routing: Any) -> dict[str, float] | None:
    if not isinstance(routing, dict):
        return None
    return {str(k): float(v) for k, v in (routing.get("AdditionalVersionWeights") or {}).items()}


@contextlib.contextmanager
def revisions(recorder: AliasRecorder | None = None) -> Iterator[AliasRecorder]:
    """While active, UpdateAlias honours RevisionId, every update changes it, and ``recorder``
    (a new one by default) sees each update."""
    from moto.awslambda.exceptions import PreconditionFailedException
    from moto.awslambda.responses import LambdaResponse
    from moto.core.exceptions import JsonRESTError

    recorder = recorder or AliasRecorder()
    original = LambdaResponse.update_alias

    @functools.wraps(original)
    def update_alias(response: Any) -> Any:
        function_name = unquote(response.path.rsplit("/")[-3])
        alias_name = unquote(response.path.rsplit("/", 2)[-1])
        params = json.loads(response.body or "{}")
        asked = AliasUpdate(
            function_name=function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name,
            alias=alias_name,
            function_version=params.get("FunctionVersion"),
            weights=_weights(params.get("RoutingConfig")),
            expected_revision=params.get("RevisionId"),
            accepted=None,
            revision=None,
            thread=threading.current_thread().name,
            at=time.time(),
        )
        recorder._run_hooks(asked, "before")
        alias = response.backend.get_alias(alias_name, function_name)  # ResourceNotFound as moto answers it
        error: Exception | None = None
        with recorder._alias_lock(alias.arn):
            if asked.expected_revision is not None and asked.expected_revision != alias.revision_id:
                error = PreconditionFailedException(
                    "The RevisionId provided does not match the latest RevisionId for the Lambda function or "
                    "alias. Call the GetFunction or the GetAlias API operation to retrieve the latest RevisionId "
                    "for your resource."
                )
            else:
                try:
                    status, headers, _ = original(response)
                except JsonRESTError as exc:  # refused as moto (or limits.py) refuses it: nothing changed
                    error = exc
                else:
                    alias.revision_id = str(uuid.uuid4())
                    body = json.dumps(alias.to_json())  # with the new RevisionId, as AWS answers
            accepted = error is None
            done = dataclasses.replace(asked, accepted=accepted, revision=alias.revision_id if accepted else None)
            recorder._record(done)
        recorder._run_hooks(done, "after")
        if error is not None:
            raise error
        return status, headers, body

    with mock.patch.object(LambdaResponse, "update_alias", update_alias):
        yield recorder
