"""SubmitBatch: the on-demand latency sample, then a Bedrock batch inference job per side.

Batch evaluation's three steps (modelgate.pipeline.batch_evaluation) share this code folder, one
module and one role each (template.yaml): SubmitBatch here (``app.lambda_handler``), PollBatch in
``poll_batch.py`` (GetModelInvocationJob; ``eval_plan.batch.state`` says what next) and ReduceBatch
in ``reduce_batch.py`` (the jobs' output scored as on-demand results are). A module per step: each
cold start loads what that step runs on every call, and nothing the other two do. Each event is the
release context.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate import inference  # noqa: F401  (each side's release, rendered into its job's records)
from modelgate.contract import ReleaseContext

# What every call runs that pipeline.batch_evaluation imports inside submit_batch: the cases parsed,
# each side's records, the latency sample run (the runner, its scorers and the results it records;
# ReduceBatch builds the sample's report): loaded at init.
from modelgate.evaluation import batch, dataset, model_scorers, runner  # noqa: F401
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import batch_evaluation
from modelgate.pipeline.deps import default_deps
from modelgate.settings import BatchSubmitSettings


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return batch_evaluation.submit_batch(default_deps(BatchSubmitSettings), event).dump()
