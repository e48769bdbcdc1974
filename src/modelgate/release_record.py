"""The release item as read back from the ledger (``Ledger.release``), typed.

A module of its own, loaded by ``Ledger.release``: only the lock take-over and supersede paths
(``pipeline.candidate``) and the CLI read a record back, while every task imports the ledger to
write one, and creating these classes (the release's forty fields copied, the item's keys, its
history) cost every handler's cold start even with their build deferred (issue #7).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelgate.release_data import ReleaseFields


class RecordedDecision(BaseModel):
    """An approval decision as the ledger keeps it (``decide``, or an automatic approval)."""

    model_config = ConfigDict(defer_build=True)  # only inside ReleaseRecord

    decision: Literal["approve", "reject"]
    approver: str
    comment: str = ""
    at: str | None = None


class HistoryEntry(BaseModel):
    """One status change: when, what, why and who."""

    model_config = ConfigDict(defer_build=True)  # only inside ReleaseRecord

    at: str
    status: str
    detail: str
    actor: str


class ReleaseRecord(ReleaseFields):
    """The release item as read back (``Ledger.release``): the release's fields, its keys, its
    history and the recorded decision (in place of an automatic approval).

    Every field this version writes is named; a record written by an older version may
    carry others, which are kept (extra="allow") rather than failing the read: the ledger
    outlives the code that wrote it.

    Built at its first read (defer_build).
    """

    model_config = ConfigDict(extra="allow", defer_build=True)

    pk: str
    sk: str
    release_id: str
    status: str
    created_at: str
    updated_at: str
    history: list[HistoryEntry] = Field(default_factory=list)
    approval: RecordedDecision | None = None
