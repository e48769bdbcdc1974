"""Bedrock's model catalogue for the embedded AWS: GetFoundationModel with a lifecycle state.

moto 5.2.1's bedrock has no GetFoundationModel. This adds it to moto's Bedrock responses,
answering from a catalogue (:class:`FoundationModels`) whose models are ACTIVE until a test
or the demo marks one LEGACY (``local.foundation_models.set_lifecycle(model_id, "LEGACY")``).
The answer carries the API's ``modelDetails`` with ``modelLifecycle.status`` ``ACTIVE`` or
``LEGACY`` ("GetFoundationModel" and "FoundationModelLifecycle", Amazon Bedrock API Reference,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_GetFoundationModel.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_FoundationModelLifecycle.html).
A model id outside the catalogue is a ``ValidationException`` ("The provided model
identifier is invalid."), as Bedrock answers an unknown identifier.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from urllib.parse import unquote

from modelgate.pricing import PRICES

LIFECYCLE_STATES = ("ACTIVE", "LEGACY")


class FoundationModels:
    """Model id -> lifecycle state; the priced Bedrock models (``modelgate.pricing``) to start with."""

    def __init__(self, model_ids: Iterable[str] | None = None) -> None:
        ids = model_ids if model_ids is not None else [m for m in PRICES if not m.startswith("local.")]
        self._states = {m: "ACTIVE" for m in ids}
        self._lock = threading.Lock()

    def set_lifecycle(self, model_id: str, status: str) -> None:
        if status not in LIFECYCLE_STATES:
            raise ValueError(f"lifecycle status {status!r} is not one of {', '.join(LIFECYCLE_STATES)}")
        with self._lock:
            self._states[model_id] = status

    def status(self, model_id: str) -> str | None:
        with self._lock:
            return self._states.get(model_id)


def install(catalogue: FoundationModels) -> Callable[[], None]:
    """Answer GetFoundationModel from ``catalogue``; returns the uninstaller."""
    from moto.bedrock.responses import BedrockResponse
    from moto.core.exceptions import JsonRESTError

    def get_foundation_model(self: BedrockResponse) -> str:
        model_id = unquote(self.path.rstrip("/").split("/")[-1])
        status = catalogue.status(model_id)
        if status is None:
            raise JsonRESTError("ValidationException", "The provided model identifier is invalid.")
        provider = model_id.split(".", 1)[0]
        return json.dumps({"modelDetails": {
            "modelArn": f"arn:aws:bedrock:{self.region}::foundation-model/{model_id}",
            "modelId": model_id,
            "modelName": model_id.split(".", 1)[-1].rsplit("-v", 1)[0],
            "providerName": provider.capitalize(),
            "inputModalities": ["TEXT"],
            "outputModalities": ["TEXT"],
            "responseStreamingSupported": True,
            "customizationsSupported": [],
            "inferenceTypesSupported": ["ON_DEMAND"],
            "modelLifecycle": {"status": status},
        }})

    previous = getattr(BedrockResponse, "get_foundation_model", None)
    BedrockResponse.get_foundation_model = get_foundation_model  # type: ignore[attr-defined]

    def uninstall() -> None:
        if previous is None:
            del BedrockResponse.get_foundation_model  # type: ignore[attr-defined]
        else:
            BedrockResponse.get_foundation_model = previous  # type: ignore[attr-defined]

    return uninstall
