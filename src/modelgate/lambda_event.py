"""The handlers' event parsing: the event validated into the handler's pydantic model.

What Powertools' ``event_parser(model=...)`` does without an envelope (``parse``: a ``str``
event through ``validate_json``, anything else through ``validate_python``, the model's
``ValidationError`` raised as is; "Parser (Pydantic)", Powertools for AWS Lambda (Python)
documentation, https://docs.powertools.aws.dev/lambda/python/latest/utilities/parser/),
with the model's own validator. Importing Powertools' parser package costs every cold
start ~10 M instructions beyond pydantic (its functions module imports
``pydantic.networks`` and ``importlib.metadata``, its decorator the middleware factory;
bench/cold_start.py) for a TypeAdapter that wraps the same validator. The handlers whose
events come in an envelope (EventBridge: intake, on_alarm) keep Powertools' models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


def parse_event(model: type[M], event: Any) -> M:
    """``event`` (a dict, or JSON text) validated into ``model``; pydantic's ValidationError otherwise."""
    if isinstance(event, (str, bytes)):
        return model.model_validate_json(event)
    return model.model_validate(event)


def event_model(model: type[M]) -> Callable[[Callable[[M, Any], R]], Callable[[Any, Any], R]]:
    """Decorate a handler ``(event: model, context)`` so it is called with the parsed event
    (``model`` built now, at the handler's init, if it was not)."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"event_model needs a pydantic model class, got {model!r}")
    # Every call validates the event: a model built at its first validation (defer_build, for
    # the handlers that import it without validating it) is built here, at the handler's init,
    # not on its first call.
    if not model.__pydantic_complete__:
        model.model_rebuild()

    def decorate(handler: Callable[[M, Any], R]) -> Callable[[Any, Any], R]:
        @functools.wraps(handler)
        def parsed(event: Any, context: Any) -> R:
            return handler(parse_event(model, event), context)

        return parsed

    return decorate
