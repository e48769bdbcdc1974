"""Providers: Bedrock's Converse request/response mapping, and the local retrieval model."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from modelgate.adapters import clients as aws
from modelgate.errors import ConfigurationError
from modelgate.manifest import InferenceParameters
from modelgate.providers import (
    LOCAL_MODELS,
    REFUSAL,
    BedrockProvider,
    Completion,
    LocalProvider,
    UnknownLocalModel,
    count_tokens,
    get_provider,
    parse_system_prompt,
    retrieve,
)

SMALL = "local.retrieval-small-v1:0"
LARGE = "local.retrieval-large-v1:0"
PARAMS = InferenceParameters(temperature=0.2, top_p=0.9, max_tokens=300)
KNOWLEDGE = """You are the support assistant.
Q: How do I reset my password? A: Open Settings > Security and choose Reset password. It takes a minute.
Q: What does the Plus plan cost? A: Plus costs $6 per month.
Q: Which payment methods do you accept? A: Credit card and PayPal.
"""


class _Sleeps:
    """A fake sleep that records what it was asked to wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def _local(**kwargs: object) -> tuple[LocalProvider, _Sleeps]:
    sleeps = _Sleeps()
    return LocalProvider(sleep=sleeps, **kwargs), sleeps  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Bedrock


@pytest.fixture
def bedrock() -> Iterator[tuple[BedrockProvider, Stubber]]:
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield BedrockProvider(client), stubber
        stubber.assert_no_pending_responses()


def _converse_response(*texts: str, inputs: int = 21, outputs: int = 7) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": t} for t in texts]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs},
        "metrics": {"latencyMs": 120},
    }


def test_bedrock_sends_top_p_only_when_the_manifest_sets_it(bedrock) -> None:
    # Newer Claude models refuse temperature and top_p together: unset top_p is not sent.
    provider, stubber = bedrock
    stubber.add_response(
        "converse",
        _converse_response("Open Settings.", inputs=21, outputs=7),
        expected_params={
            "modelId": "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "system": [{"text": "You are support."}],
            "messages": [{"role": "user", "content": [{"text": "reset password?"}]}],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.2},
        },
    )
    provider.converse(
        model_id="anthropic.claude-sonnet-4-5-20250929-v1:0",
        system="You are support.",
        user="reset password?",
        parameters=InferenceParameters(temperature=0.2, max_tokens=300),
    )
    stubber.assert_no_pending_responses()


def test_bedrock_sends_converse_request_and_maps_the_answer(bedrock) -> None:
    provider, stubber = bedrock
    # Given Bedrock answers with text and usage for exactly this request
    stubber.add_response(
        "converse",
        _converse_response("Open Settings.", inputs=21, outputs=7),
        expected_params={
            "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "system": [{"text": "You are support."}],
            "messages": [{"role": "user", "content": [{"text": "reset password?"}]}],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.2, "topP": 0.9},
        },
    )
    # When the provider converses
    completion = provider.converse(
        model_id="anthropic.claude-3-haiku-20240307-v1:0",
        system="You are support.",
        user="reset password?",
        parameters=PARAMS,
    )
    # Then the answer text and token usage come from the response
    assert completion == Completion(
        text="Open Settings.",
        input_tokens=21,
        output_tokens=7,
        model_id="anthropic.claude-3-haiku-20240307-v1:0",
    )


def test_bedrock_joins_text_blocks(bedrock) -> None:
    provider, stubber = bedrock
    # Given an answer split over two text blocks
    stubber.add_response("converse", _converse_response("Hello, ", "world."))
    # When the provider converses / Then the text is both blocks in order
    completion = provider.converse(
        model_id="amazon.nova-lite-v1:0", system="s", user="u", parameters=PARAMS
    )
    assert completion.text == "Hello, world."


def test_bedrock_errors_propagate(bedrock) -> None:
    provider, stubber = bedrock
    # Given Bedrock throttles
    stubber.add_client_error(
        "converse", service_error_code="ThrottlingException", http_status_code=429
    )
    # When the provider converses / Then the error reaches the caller (Lambda reports it)
    with pytest.raises(ClientError, match="ThrottlingException"):
        provider.converse(model_id="amazon.nova-lite-v1:0", system="s", user="u", parameters=PARAMS)


# --------------------------------------------------------------------------- local


def test_local_answers_from_the_best_matching_knowledge_line() -> None:
    provider, _ = _local()
    # Given knowledge about passwords, prices and payments in the system prompt
    # When a customer asks a paraphrase about the password
    completion = provider.converse(
        model_id=SMALL,
        system=KNOWLEDGE,
        user="I forgot my password, how can I reset it?",
        parameters=PARAMS,
    )
    # Then the answer is the password line's answer
    assert (
        completion.text == "Open Settings > Security and choose Reset password. It takes a minute."
    )
    assert completion.model_id == SMALL


def test_local_really_reads_the_prompt() -> None:
    provider, _ = _local()
    question = "What does Plus cost?"
    # Given the same question against knowledge with and without the price line
    without_price = "\n".join(line for line in KNOWLEDGE.splitlines() if "$6" not in line)
    # When both are asked
    with_answer = provider.converse(
        model_id=SMALL, system=KNOWLEDGE, user=question, parameters=PARAMS
    )
    without = provider.converse(
        model_id=SMALL, system=without_price, user=question, parameters=PARAMS
    )
    # Then only the prompt that has the fact gives it
    assert "$6 per month" in with_answer.text
    assert "$6" not in without.text


def test_local_refuses_off_topic_questions() -> None:
    provider, _ = _local()
    # Given support knowledge / When asked something it has nothing on
    completion = provider.converse(
        model_id=SMALL, system=KNOWLEDGE, user="Who won the football world cup?", parameters=PARAMS
    )
    # Then it says it doesn't know
    assert completion.text == REFUSAL


def test_local_refuses_when_the_best_match_is_below_the_threshold() -> None:
    provider, _ = _local()
    # Given a question that shares one word ("cost") with the price line, among many others
    question = "Does the cost of living in Paris worry you, and will interest rates fall this year?"
    _, score = retrieve(parse_system_prompt(KNOWLEDGE), question, stem=False)
    assert 0 < score < LOCAL_MODELS[SMALL].threshold
    # When asked / Then the weak match is not taken as an answer
    completion = provider.converse(
        model_id=SMALL, system=KNOWLEDGE, user=question, parameters=PARAMS
    )
    assert completion.text == REFUSAL


def test_local_refuses_with_no_knowledge_at_all() -> None:
    provider, _ = _local()
    completion = provider.converse(
        model_id=SMALL, system="Be nice.", user="reset my password", parameters=PARAMS
    )
    assert completion.text == REFUSAL


def test_local_fallback_and_terse_directives_change_behaviour() -> None:
    provider, _ = _local()
    # Given a prompt with a custom fallback and the terse style
    system = KNOWLEDGE + "FALLBACK: Please ask a human.\nSTYLE: terse\n"
    # When asked on-topic and off-topic questions
    on_topic = provider.converse(
        model_id=SMALL, system=system, user="reset my password", parameters=PARAMS
    )
    off_topic = provider.converse(
        model_id=SMALL, system=system, user="weather in Paris", parameters=PARAMS
    )
    # Then the answer is its first sentence, and the refusal is the prompt's own
    assert on_topic.text == "Open Settings > Security and choose Reset password."
    assert off_topic.text == "Please ask a human."


def test_local_large_model_matches_inflected_words_the_small_one_misses() -> None:
    # Given knowledge phrased "resetting passwords" and a question "reset password"
    system = "Q: Resetting passwords A: Use the link on the sign-in page.\nQ: Prices A: $6."
    small, _ = _local()
    # When the small and the large model answer
    small_answer = small.converse(
        model_id=SMALL, system=system, user="reset password", parameters=PARAMS
    )
    large_answer = small.converse(
        model_id=LARGE, system=system, user="reset password", parameters=PARAMS
    )
    # Then only the large one (which folds suffixes) finds the line
    assert small_answer.text == REFUSAL
    assert large_answer.text == "Use the link on the sign-in page."


def test_local_counts_word_ish_tokens_of_prompt_and_answer() -> None:
    provider, _ = _local()
    # Given a prompt and question
    user = "Which payment methods?"
    # When answered
    completion = provider.converse(model_id=SMALL, system=KNOWLEDGE, user=user, parameters=PARAMS)
    # Then input = tokens of system + user; output = tokens of the answer
    assert completion.text == "Credit card and PayPal."
    assert completion.output_tokens == 5  # Credit, card, and, PayPal, "."
    assert completion.input_tokens == count_tokens(KNOWLEDGE) + 4


def test_local_truncates_to_max_tokens() -> None:
    provider, _ = _local()
    # Given max_tokens smaller than the answer
    params = InferenceParameters(max_tokens=3)
    # When answered / Then the answer stops after 3 tokens
    completion = provider.converse(
        model_id=SMALL, system=KNOWLEDGE, user="payment methods", parameters=params
    )
    assert completion.text == "Credit card and"
    assert completion.output_tokens == 3


def test_local_sleeps_base_plus_per_output_token() -> None:
    # Given a provider with 10 ms base and 1 ms per output token
    provider, sleeps = _local(base_ms=10.0, per_output_token_ms=1.0)
    # When it answers with 5 output tokens
    completion = provider.converse(
        model_id=SMALL, system=KNOWLEDGE, user="payment methods", parameters=PARAMS
    )
    # Then it slept (10 + 5 x 1) ms once
    assert completion.output_tokens == 5
    assert sleeps.calls == [pytest.approx(0.015)]


def test_local_model_defaults_make_the_large_model_slower() -> None:
    # Given the default latency profiles / When both models give the same answer
    small, small_sleeps = _local()
    large, large_sleeps = _local()
    small.converse(model_id=SMALL, system=KNOWLEDGE, user="payment methods", parameters=PARAMS)
    large.converse(model_id=LARGE, system=KNOWLEDGE, user="payment methods", parameters=PARAMS)
    # Then the large one sleeps longer
    assert large_sleeps.calls[0] > small_sleeps.calls[0] > 0


def test_local_is_deterministic() -> None:
    provider, _ = _local()
    answers = {
        provider.converse(
            model_id=SMALL, system=KNOWLEDGE, user="reset password", parameters=PARAMS
        )
        for _ in range(5)
    }
    assert len(answers) == 1


def test_local_unknown_model_id_is_an_error_naming_it() -> None:
    provider, _ = _local()
    with pytest.raises(UnknownLocalModel, match=r"local\.nope-v1:0"):
        provider.converse(model_id="local.nope-v1:0", system=KNOWLEDGE, user="x", parameters=PARAMS)


# --------------------------------------------------------------------------- factory


@pytest.fixture
def fresh_factories(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    get_provider.cache_clear()
    aws.reset_clients()
    yield
    get_provider.cache_clear()
    aws.reset_clients()


def test_get_provider_builds_each_provider_once(fresh_factories: None) -> None:
    # Given the factory / When asked twice for each name
    local = get_provider("local")
    bedrock = get_provider("bedrock")
    # Then the right classes come back, the same object per name
    assert isinstance(local, LocalProvider)
    assert isinstance(bedrock, BedrockProvider)
    assert get_provider("local") is local
    assert get_provider("bedrock") is bedrock


def test_get_provider_rejects_unknown_names(fresh_factories: None) -> None:
    with pytest.raises(ConfigurationError, match="MODEL_PROVIDER.*'openai'"):
        get_provider("openai")
