"""The events the state machine sends to tasks that need more than the release context.

(Tasks that take only the context parse it as ``ReleaseContext``.)
"""

from __future__ import annotations

from pydantic import BaseModel

from modelgate.models import ReleaseContext


class CallbackEvent(BaseModel):
    """A waitForTaskToken task: the context and the task token (stored, never logged)."""

    release: ReleaseContext
    task_token: str


class OutcomeEvent(BaseModel):
    """A task after a Catch: the context and the caught error ({"Error", "Cause"})."""

    release: ReleaseContext
    error: dict | None = None


class Shard(BaseModel):
    index: int
    start: int
    end: int


class ShardEvent(BaseModel):
    """One item of the evaluation's Distributed Map."""

    release: ReleaseContext
    shard: Shard


class ReduceEvent(BaseModel):
    """The Map's results: where each shard's per-case results are."""

    release: ReleaseContext
    shards: list[dict]
