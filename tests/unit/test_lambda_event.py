"""modelgate.lambda_event: the handlers' event parsing (what Powertools' event_parser did)."""

import json

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from modelgate.lambda_event import event_model, parse_event


class Ping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release_id: str
    n: int = 0


def test_a_dict_event_is_validated_into_the_model() -> None:
    assert parse_event(Ping, {"release_id": "r-1", "n": "3"}) == Ping(release_id="r-1", n=3)


@pytest.mark.parametrize("raw", [json.dumps({"release_id": "r-2"}), json.dumps({"release_id": "r-2"}).encode()])
def test_a_json_text_event_is_validated_as_json(raw: str | bytes) -> None:
    assert parse_event(Ping, raw) == Ping(release_id="r-2")


@pytest.mark.parametrize("event", [{"n": 1}, {"release_id": "r", "typo": 1}, ["release_id"], None, "{not json"])
def test_a_bad_event_raises_the_models_validation_error(event: object) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_event(Ping, event)
    assert caught.value.title == "Ping"


def test_the_decorated_handler_gets_the_parsed_event_and_the_context() -> None:
    seen = []

    @event_model(Ping)
    def handler(event: Ping, context: object) -> dict:
        """The handler's own docstring."""
        seen.append((event, context))
        return {"id": event.release_id}

    context = object()
    assert handler({"release_id": "r-3"}, context) == {"id": "r-3"}
    assert seen == [(Ping(release_id="r-3"), context)]
    assert handler.__name__ == "handler" and handler.__doc__ == "The handler's own docstring."
    with pytest.raises(ValidationError):
        handler({"release_id": 3}, context)
    assert len(seen) == 1  # a bad event never reaches the handler


def test_event_model_refuses_what_is_not_a_pydantic_model() -> None:
    with pytest.raises(TypeError, match="needs a pydantic model class, got <class 'dict'>"):
        event_model(dict)  # type: ignore[arg-type]


def test_a_deferred_event_model_is_built_when_the_handler_is_decorated_not_on_its_first_call() -> None:
    class Deferred(BaseModel):
        model_config = ConfigDict(defer_build=True)

        release_id: str

    assert not Deferred.__pydantic_complete__
    handler = event_model(Deferred)(lambda event, context: event.release_id)
    assert Deferred.__pydantic_complete__
    assert handler({"release_id": "r-4"}, None) == "r-4"
