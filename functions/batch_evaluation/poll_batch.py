"""PollBatch: GetModelInvocationJob for each side's job; ``eval_plan.batch.state`` says what next.

One of batch evaluation's three steps (see app.py): it reads job states only, so its cold start
loads no dataset, scorer or result model.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext

# What every call runs that pipeline.batch_evaluation imports inside poll_batch: loaded at init.
from modelgate.evaluation import batch  # noqa: F401
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import batch_evaluation
from modelgate.pipeline.deps import default_deps


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return batch_evaluation.poll_batch(default_deps(), event).dump()
