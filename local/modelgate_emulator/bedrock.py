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

A provider-side change under the same model id (what a scheduled re-evaluation exists to
catch: the provider updates what a model id answers, nothing in the release changes) is
modelled on the local provider, which stands in for Bedrock's Converse here:
``change_answers(model_id, change)`` makes every later answer of that model go through
``change(question, answer)`` until ``revert_answers``; :func:`degraded` is one such change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from urllib.parse import unquote

from modelgate.pricing import PRICES

LIFECYCLE_STATES = ("ACTIVE", "LEGACY")
AnswerChange = Callable[[str, str], str]  # (the user's message, the model's answer) -> the answer served


def degraded(share: float, answer: str = "I'm not sure about that; please contact support.") -> AnswerChange:
    """A change that answers ``answer`` to a fixed ``share`` of questions (chosen by a hash of the
    question, so the same questions every time) and leaves the others alone."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")

    def change(question: str, original: str) -> str:
        bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:4], "big") / 2**32
        return answer if bucket < share else original

    return change


class FoundationModels:
    """Model id -> lifecycle state; the priced Bedrock models (``modelgate.pricing``) to start with."""

    def __init__(self, model_ids: Iterable[str] | None = None) -> None:
        ids = model_ids if model_ids is not None else [m for m in PRICES if not m.startswith("local.")]
        self._states = {m: "ACTIVE" for m in ids}
        self._changes: dict[str, AnswerChange] = {}
        self._lock = threading.Lock()

    def change_answers(self, model_id: str, change: AnswerChange) -> None:
        """From now on, ``model_id`` answers through ``change`` (the provider changed it)."""
        with self._lock:
            self._changes[model_id] = change

    def revert_answers(self, model_id: str) -> None:
        with self._lock:
            self._changes.pop(model_id, None)

    def answer_change(self, model_id: str) -> AnswerChange | None:
        with self._lock:
            return self._changes.get(model_id)

    def set_lifecycle(self, model_id: str, status: str) -> None:
        if status not in LIFECYCLE_STATES:
            raise ValueError(f"lifecycle status {status!r} is not one of {', '.join(LIFECYCLE_STATES)}")
        with self._lock:
            self._states[model_id] = status

    def status(self, model_id: str) -> str | None:
        with self._lock:
            return self._states.get(model_id)


def install(catalogue: FoundationModels) -> Callable[[], None]:
    """Answer GetFoundationModel from ``catalogue``, and serve its answer changes; returns the uninstaller."""
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

    from modelgate.providers import LocalProvider

    converse = LocalProvider.converse

    def changed_converse(self: LocalProvider, *, model_id: str, system: str, user: str, parameters: object) -> object:
        completion = converse(self, model_id=model_id, system=system, user=user, parameters=parameters)  # type: ignore[arg-type]
        change = catalogue.answer_change(model_id)
        return completion if change is None else dataclasses.replace(completion, text=change(user, completion.text))

    previous = getattr(BedrockResponse, "get_foundation_model", None)
    BedrockResponse.get_foundation_model = get_foundation_model  # type: ignore[attr-defined]
    LocalProvider.converse = changed_converse  # type: ignore[method-assign]

    def uninstall() -> None:
        LocalProvider.converse = converse  # type: ignore[method-assign]
        if previous is None:
            del BedrockResponse.get_foundation_model  # type: ignore[attr-defined]
        else:
            BedrockResponse.get_foundation_model = previous  # type: ignore[attr-defined]

    return uninstall
