"""Attest: chain the ended release in the ledger and sign its attestation (after Promote,
Rollback and RecordOutcome; and after the last resort closed a release). The event is the
release context those steps returned; from LastResortAttest it also carries ``last_resort``
(what the last resort saw), which Attest does not use: the ledger's final status is its input."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext
from modelgate.observability import logger
from modelgate.pipeline import attest
from modelgate.pipeline.deps import default_deps
from modelgate.settings import AttestSettings


class AttestEvent(ReleaseContext):
    """The context, as LastResortAttest passes it: with the last resort's ``$.last_resort``."""

    last_resort: dict[str, Any] | None = None


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_parser(model=AttestEvent)
def lambda_handler(event: AttestEvent, context: LambdaContext) -> dict:
    ctx = ReleaseContext.model_validate({k: v for k, v in event.dump().items() if k != "last_resort"})
    return attest.attest(default_deps(AttestSettings), ctx).dump()
