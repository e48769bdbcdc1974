"""Model providers behind one interface: Bedrock on AWS, a deterministic local model off it.

Why a local model that really reads the prompt: Modelgate's pipeline, gate and canary must
be demonstrable and testable with no AWS account. A stub that returns canned text would
make every prompt score the same, so the gate would prove nothing. ``LocalProvider``
answers by retrieval over the knowledge written in the system prompt, so a prompt with
better knowledge really scores better and a prompt that lost knowledge really scores worse.

Local system-prompt format (one directive per line; anything else is prose the local model
ignores, as a real model would use it only as tone):

    Q: <question> A: <answer>      a knowledge line; retrieval matches the user message
                                   against the question and the answer words
    STYLE: terse                   answer with the first sentence of the answer only
    FALLBACK: <text>               what to say when nothing matches
                                   (default "I don't know.")
    # ...                          a comment

Retrieval: text is tokenised into lower-case words minus a small stopword list; each
knowledge line is scored by the cosine of IDF-weighted word sets (the user's words vs the
line's words, IDF computed over the knowledge lines; a word no line has weighs most, so an
off-topic question scores low). The best line wins (ties: the earlier line); below the
model's threshold the model refuses. The large local model also folds simple suffixes
("passwords", "resetting" -> "password", "reset"), so it matches more paraphrases.

Tokens: "word-ish" tokens, i.e. runs of word characters and single punctuation marks.
Input = system + user, output = the answer. Latency is simulated by really sleeping
``base_ms + per_output_token_ms * output_tokens``, so latency measured around a call is real.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from modelgate.adapters import clients as aws
from modelgate.errors import ConfigurationError, ModelgateError
from modelgate.manifest import InferenceParameters

REFUSAL = "I don't know."


class UnknownLocalModel(ModelgateError):
    """The local provider has no model with this id."""


@dataclass(frozen=True, slots=True)
class Completion:
    """One model answer and what it consumed (cost = usage x modelgate.pricing)."""

    text: str
    input_tokens: int
    output_tokens: int
    model_id: str


class ModelProvider(Protocol):
    """What the inference service needs from a model: one system + user turn, one answer."""

    def converse(
        self, *, model_id: str, system: str, user: str, parameters: InferenceParameters
    ) -> Completion: ...


# --------------------------------------------------------------------------- Bedrock


class BedrockProvider:
    """Bedrock Converse API: one request shape for every Bedrock model family."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def converse(
        self, *, model_id: str, system: str, user: str, parameters: InferenceParameters
    ) -> Completion:
        response = self._client.converse(
            modelId=model_id,
            system=[{"text": system}],
            messages=[{"role": "user", "content": [{"text": user}]}],
            inferenceConfig={
                "maxTokens": parameters.max_tokens,
                "temperature": parameters.temperature,
                **({"topP": parameters.top_p} if parameters.top_p is not None else {}),
            },
        )
        # Content blocks other than text (e.g. reasoning) are not part of the answer.
        blocks = response["output"]["message"]["content"]
        text = "".join(block["text"] for block in blocks if "text" in block)
        usage = response["usage"]
        return Completion(
            text=text,
            input_tokens=int(usage["inputTokens"]),
            output_tokens=int(usage["outputTokens"]),
            model_id=model_id,
        )


# --------------------------------------------------------------------------- local

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"[a-z0-9]+")
_KNOWLEDGE = re.compile(r"^Q:\s*(?P<q>.+?)\s+A:\s*(?P<a>.+?)\s*$")
_DIRECTIVE = re.compile(r"^(?P<name>STYLE|FALLBACK):\s*(?P<value>.*?)\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
STOPWORDS = frozenset(
    "a an and are as at be by can could do does for from have how i if in is it its me my "
    "of on or our please should so that the their there this to was what when where which "
    "will with would you your".split()
)


def count_tokens(text: str) -> int:
    """Word-ish token count: runs of word characters plus single punctuation marks."""
    return len(_TOKEN.findall(text))


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def words(text: str, *, stem: bool = False) -> frozenset[str]:
    """The content words of ``text``: lower-case, stopwords dropped (optionally stemmed)."""
    found = (w for w in _WORD.findall(text.lower()) if w not in STOPWORDS)
    return frozenset(_stem(w) if stem else w for w in found)


@dataclass(frozen=True, slots=True)
class LocalModel:
    """One local model id: how fast it 'generates' and how well it matches paraphrases."""

    base_ms: float
    per_output_token_ms: float
    threshold: float
    stem: bool


LOCAL_MODELS: dict[str, LocalModel] = {
    "local.retrieval-small-v1:0": LocalModel(
        base_ms=2.0, per_output_token_ms=0.2, threshold=0.10, stem=False
    ),
    "local.retrieval-large-v1:0": LocalModel(
        base_ms=4.0, per_output_token_ms=0.4, threshold=0.10, stem=True
    ),
}


@dataclass(frozen=True, slots=True)
class Knowledge:
    """What the local model reads from a system prompt."""

    pairs: tuple[tuple[str, str], ...]
    terse: bool
    fallback: str


@lru_cache(maxsize=64)
def parse_system_prompt(system: str) -> Knowledge:
    """Knowledge lines and directives of a system prompt (cached: prompts repeat)."""
    pairs: list[tuple[str, str]] = []
    terse, fallback = False, REFUSAL
    for raw in system.splitlines():
        line = raw.strip()
        if match := _KNOWLEDGE.match(line):
            pairs.append((match["q"], match["a"]))
        elif match := _DIRECTIVE.match(line):
            if match["name"] == "STYLE":
                terse = match["value"].lower() == "terse"
            elif match["value"]:
                fallback = match["value"]
    return Knowledge(tuple(pairs), terse, fallback)


@dataclass(frozen=True, slots=True)
class _Index:
    docs: tuple[frozenset[str], ...]
    df: Mapping[str, int]


@lru_cache(maxsize=64)
def _index(knowledge: Knowledge, stem: bool) -> _Index:
    docs = tuple(words(q + " " + a, stem=stem) for q, a in knowledge.pairs)
    df: dict[str, int] = {}
    for doc in docs:
        for w in doc:
            df[w] = df.get(w, 0) + 1
    return _Index(docs, df)


def retrieve(knowledge: Knowledge, user: str, *, stem: bool) -> tuple[int, float]:
    """Index of the best knowledge line for ``user`` and its score in [0, 1] (-1 if none)."""
    index = _index(knowledge, stem)
    query = words(user, stem=stem)
    if not index.docs or not query:
        return -1, 0.0
    n = len(index.docs)

    def idf2(w: str) -> float:
        return math.log((n + 1) / (index.df.get(w, 0) + 0.5)) ** 2

    query_norm = math.sqrt(sum(idf2(w) for w in query))
    best, best_score = -1, 0.0
    for position, doc in enumerate(index.docs):
        overlap = sum(idf2(w) for w in query & doc)
        if overlap == 0.0:
            continue
        score = overlap / (query_norm * math.sqrt(sum(idf2(w) for w in doc)))
        if score > best_score:
            best, best_score = position, score
    return best, best_score


def _truncate(text: str, max_tokens: int) -> str:
    spans = list(_TOKEN.finditer(text))
    return text if len(spans) <= max_tokens else text[: spans[max_tokens - 1].end()]


class LocalProvider:
    """Deterministic retrieval 'model' over the knowledge in the system prompt.

    ``base_ms`` / ``per_output_token_ms`` override every model's simulated latency (tests
    pass 0 to run fast); ``sleep`` is injectable for the same reason. Temperature and top_p
    are accepted and ignored: the model is greedy, so the same prompt gives the same answer.
    """

    def __init__(
        self,
        *,
        base_ms: float | None = None,
        per_output_token_ms: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._base_ms = base_ms
        self._per_output_token_ms = per_output_token_ms
        self._sleep = sleep

    def converse(
        self, *, model_id: str, system: str, user: str, parameters: InferenceParameters
    ) -> Completion:
        model = LOCAL_MODELS.get(model_id)
        if model is None:
            raise UnknownLocalModel(
                f"local provider has no model {model_id!r} (known: {', '.join(LOCAL_MODELS)})"
            )
        knowledge = parse_system_prompt(system)
        index, score = retrieve(knowledge, user, stem=model.stem)
        if index < 0 or score < model.threshold:
            text = knowledge.fallback
        else:
            text = knowledge.pairs[index][1]
            if knowledge.terse:
                text = _SENTENCE_END.split(text, maxsplit=1)[0]
        text = _truncate(text, parameters.max_tokens)
        output_tokens = count_tokens(text)
        base = model.base_ms if self._base_ms is None else self._base_ms
        per_token = (
            model.per_output_token_ms
            if self._per_output_token_ms is None
            else self._per_output_token_ms
        )
        delay_ms = base + per_token * output_tokens
        if delay_ms > 0:
            self._sleep(delay_ms / 1000.0)
        return Completion(
            text=text,
            input_tokens=count_tokens(system) + count_tokens(user),
            output_tokens=output_tokens,
            model_id=model_id,
        )


# --------------------------------------------------------------------------- factory


@lru_cache(maxsize=4)
def get_provider(name: str) -> ModelProvider:
    """The provider ``InferenceSettings.provider`` names (MODEL_PROVIDER), built once per process."""
    if name == "bedrock":
        return BedrockProvider(aws.client("bedrock-runtime"))
    if name == "local":
        return LocalProvider()
    raise ConfigurationError(f"MODEL_PROVIDER must be 'bedrock' or 'local', got {name!r}")
