"""Inference function of a managed service (the sample: support-bot).

Thin on purpose: the settings (provider, artefact bucket) are validated first, the
environment of the published version pins the release, and modelgate.inference does the
work. Errors propagate unhandled so Lambda reports them (errorType = the exception's class
name) and the canary's Errors alarm sees them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelgate import inference, providers, settings
from modelgate.adapters import clients as aws
from modelgate.observability import logger
from modelgate.settings import InferenceSettings

CODE_ROOT = Path(__file__).resolve().parent  # the function's code (MODEL_BOOTSTRAP is a folder in it)


@logger.inject_lambda_context(log_event=False)  # requests may carry customer text
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = settings.load(InferenceSettings)  # a deploy missing a variable fails here, naming it
    provider = providers.get_provider(config.provider)
    # this version's release; none: the bootstrap configuration bundled here, if any, else ModelNotConfigured
    response = inference.serve(event, config, os.environ, lambda: aws.client("s3"), provider, CODE_ROOT)
    logger.info(
        "request served",
        model_id=response["model_id"],
        commit=response["release"]["commit"],
        input_tokens=response["usage"]["input_tokens"],
        output_tokens=response["usage"]["output_tokens"],
        cost_usd=response["cost_usd"],
    )
    return response
