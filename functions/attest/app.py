"""Attest: chain the ended release in the ledger and sign its attestation (after Promote,
Rollback and RecordOutcome; and after the last resort closed a release). The event is the
release context those steps returned; from LastResortAttest it also carries ``last_resort``
(what the last resort saw), which Attest does not use: the ledger's final status is its input.

The stack's one signer also signs revocations: ``{"revoke": {"service", "release_id"}}``
from whoever rolled a promoted release back (modelgate.pipeline.revocation), checked against
the ledger and the chain before anything is signed."""

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from modelgate.contract import ReleaseContext
from modelgate.lambda_event import parse_event
from modelgate.observability import logger
from modelgate.pipeline import attest
from modelgate.pipeline.deps import default_deps
from modelgate.settings import AttestSettings


class LastResort(BaseModel):
    """What LastResortAttest adds to the context: ``$.last_resort`` (checked, then dropped).

    Its own small model rather than a subclass of the context: a subclass would compile all
    of the context's fields again at every cold start (bench/cold_start.py)."""

    model_config = ConfigDict(extra="allow")

    last_resort: dict[str, Any] | None = None


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str = Field(min_length=1, max_length=128)
    release_id: str = Field(min_length=1, max_length=256)


class RevokeEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revoke: RevokeRequest


@logger.inject_lambda_context(correlation_id_path="release_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if isinstance(event, (str, bytes)):
        event = json.loads(event)
    if isinstance(event, dict) and "revoke" in event:
        request = parse_event(RevokeEvent, event).revoke
        return attest.revoke(default_deps(AttestSettings), request.service, request.release_id)
    parse_event(LastResort, event)
    ctx = ReleaseContext.model_validate({k: v for k, v in event.items() if k != "last_resort"})
    return attest.attest(default_deps(AttestSettings), ctx).dump()
