"""Attest: chain the ended release in the ledger and sign its attestation (after Promote,
Rollback and RecordOutcome). The event is the release context those steps returned."""

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext
from modelgate.observability import logger
from modelgate.pipeline import attest
from modelgate.pipeline.deps import default_deps
from modelgate.settings import AttestSettings


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_parser(model=ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return attest.attest(default_deps(AttestSettings), event).dump()
