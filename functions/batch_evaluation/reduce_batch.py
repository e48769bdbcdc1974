"""ReduceBatch: the jobs' output scored as on-demand results are, with the sample's latency: one report.

One of batch evaluation's three steps (see app.py).
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate import pricing  # noqa: F401  (each answer priced as the function prices a call)
from modelgate.contract import ReleaseContext

# What every call runs that pipeline.batch_evaluation imports inside reduce_batch: the cases parsed,
# the answers read and scored (the runner, its scorers), the report built: loaded at init.
from modelgate.evaluation import batch, comparison, dataset, model_scorers, runner  # noqa: F401
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import batch_evaluation
from modelgate.pipeline.deps import default_deps


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return batch_evaluation.reduce_batch(default_deps(), event).dump()
