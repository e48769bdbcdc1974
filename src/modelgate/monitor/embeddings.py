"""Embeddings for the drift check: Bedrock on AWS, an explicit local stand-in on the embedded AWS.

``bedrock``: Amazon Titan Text Embeddings V2 through InvokeModel (request
``{"inputText": ..., "normalize": true}``, response ``{"embedding": [...]}``: "Amazon Titan
Embeddings Text", Amazon Bedrock User Guide,
https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html).
``local``: :func:`modelgate.monitor.drift_stats.hashed_embedding`, a hashed bag of words; not
a semantic model, named as such (``local.hashed-bag-of-words-v1``) in every profile it makes,
and never compared with a Bedrock centroid.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from modelgate.monitor import drift_stats as ds
from modelgate.monitor.drift import Embedder, local_embedder
from modelgate.monitor.policy import DriftPolicy


def bedrock_embedder(client: Any, model_id: str) -> Embedder:
    def embed(texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            body = json.dumps({"inputText": text[:20_000], "normalize": True})
            response = client.invoke_model(modelId=model_id, body=body, contentType="application/json",
                                           accept="application/json")
            vectors.append([float(x) for x in json.loads(response["body"].read())["embedding"]])
        return vectors

    return embed


def embedder_for(policy: DriftPolicy, client_factory: Callable[[str], Any]) -> tuple[Embedder, str]:
    """(embedder, model name) the policy asks for."""
    if policy.embedding == "bedrock":
        return bedrock_embedder(client_factory("bedrock-runtime"), policy.embedding_model_id), policy.embedding_model_id
    return local_embedder, ds.LOCAL_EMBEDDING_MODEL
