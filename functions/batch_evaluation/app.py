"""Batch evaluation's three steps (modelgate.pipeline.batch_evaluation), one handler each.

Three functions share this code, each with its own role (template.yaml): SubmitBatch
(``lambda_handler``: the on-demand latency sample, then a Bedrock batch inference job per side),
PollBatch (``poll_handler``: GetModelInvocationJob; ``eval_plan.batch.state`` says what next)
and ReduceBatch (``reduce_handler``: the jobs' output scored as on-demand results are). Each
event is the release context.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext

# What all three steps' every call runs that pipeline.batch_evaluation imports inside them: loaded
# at init. (The runner, SubmitBatch's and ReduceBatch's alone, still loads on their first call.)
from modelgate.evaluation import batch  # noqa: F401
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import batch_evaluation
from modelgate.pipeline.deps import default_deps
from modelgate.settings import BatchSubmitSettings


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return batch_evaluation.submit_batch(default_deps(BatchSubmitSettings), event).dump()


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def poll_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return batch_evaluation.poll_batch(default_deps(), event).dump()


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def reduce_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return batch_evaluation.reduce_batch(default_deps(), event).dump()
