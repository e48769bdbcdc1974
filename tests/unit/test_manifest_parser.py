"""The manifest parser means what it says: size cap, no duplicate keys, no NaN, no type
coercion, bounded strings and bounded reasons; release keys Step Functions can name an
execution after; the service policy's model allow list."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from modelgate.errors import MAX_REASON_CHARS, ManifestInvalid, bounded, shown
from modelgate.manifest import (
    MAX_AUTHOR,
    MAX_BRANCH,
    MAX_MANIFEST_BYTES,
    MAX_MODEL_ID,
    parse_manifest,
    parse_release_key,
    refused_release_id,
)
from modelgate.policy import ReleasePolicy

COMMIT = "c" * 40


def document(**changes) -> dict:
    doc = {
        "service": "support-bot",
        "model": {"provider": "local", "model_id": "local.retrieval-small-v1:0"},
        "parameters": {"temperature": 0, "max_tokens": 256},
        "prompts": [{"name": "system", "file": "prompts/system.txt", "sha256": "a" * 64}],
        "source": {"commit": COMMIT, "branch": "main", "author": "Alice <alice@example.com>"},
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = doc
        for name in parents:
            target = target[name]
        target[leaf] = value
    return doc


def raw(**changes) -> bytes:
    return json.dumps(document(**changes)).encode()


def test_a_well_formed_manifest_parses():
    manifest = parse_manifest(raw())
    assert manifest.parameters.max_tokens == 256 and manifest.parameters.temperature == 0.0


# case -> (bytes, what the reason must say)
REFUSED = {
    "duplicate top-level key": (
        b'{"service": "support-bot", "service": "other-bot"}', "key 'service' appears twice in one JSON object"),
    "duplicate nested key": (
        raw().replace(b'"max_tokens": 256', b'"max_tokens": 256, "max_tokens": 8000'), "key 'max_tokens' appears twice"),
    "NaN": (raw().replace(b'"temperature": 0', b'"temperature": NaN'), "NaN is not a number JSON allows"),
    "Infinity": (raw().replace(b'"temperature": 0', b'"temperature": -Infinity'), "-Infinity is not a number"),
    "overflowing float": (raw().replace(b'"temperature": 0', b'"temperature": 1e999'), "'1e999' is not a finite number"),
    "number as a string": (raw(parameters__max_tokens="256"), "parameters.max_tokens: Input should be a valid integer"),
    "boolean as a number": (raw(parameters__temperature=True), "parameters.temperature: Input should be a valid number"),
    "float as an integer": (raw(parameters__max_tokens=256.0), "parameters.max_tokens: Input should be a valid integer"),
    "boolean schema version": (raw(schema_version=True), "schema_version must be the integer 1, got bool"),
    "float schema version": (raw(schema_version=1.0), "schema_version must be the integer 1, got float"),
    "number as an author": (raw(source__author=5), "source.author: Input should be a valid string"),
    "not UTF-8": (raw().replace(b"main", b"ma\xffn"), "is not UTF-8 text"),
    "a JSON array": (b"[]", "must hold a JSON object, not a JSON list"),
    "not JSON": (b"{not json", "is not valid JSON"),
    "deeply nested": (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    "a huge integer": (raw().replace(b'"max_tokens": 256', b'"max_tokens": ' + b"9" * 5000), "is not valid JSON"),
    "long model id": (raw(model__model_id="a" * 100_000 + "-v1:0"),
                      f"model.model_id: String should have at most {MAX_MODEL_ID} characters"),
    "long branch": (raw(source__branch="b" * 200_000), f"source.branch: String should have at most {MAX_BRANCH} characters"),
    "long author": (raw(source__author="x" * 100_000), f"source.author: String should have at most {MAX_AUTHOR} characters"),
    "long commit": (raw(source__commit="f" * 100_000), "source.commit: String should have at most 40 characters"),
    "commit with a newline": (raw(source__commit="abcdef12\n"), "source.commit: Value error, commit 'abcdef12\\n' is not"),
    "branch with a newline": (raw(source__branch="main\nApprove: https://evil.example"),
                              "source.branch: Value error, branch contains the non-printable character '\\n'"),
    "author with an escape": (raw(source__author="\x1b[2JMallory"), "source.author: Value error, author contains"),
    "prompt path with a bidi override": (raw(prompts=[{"name": "system", "file": "p\u202etxt.sh", "sha256": "a" * 64}]),
                                         "prompts.0.file: Value error, file contains"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_hostile_manifest_is_refused_with_a_bounded_reason_naming_the_problem(case):
    data, expected = REFUSED[case]
    with pytest.raises(ManifestInvalid) as info:
        parse_manifest(data)
    reason = str(info.value)
    assert expected in reason
    assert len(reason) <= 1_000 and reason.isprintable()


def test_a_manifest_over_the_size_cap_is_refused_before_it_is_parsed():
    padded = raw()[:-1] + b', "padding": "' + b" " * (5 * 1024 * 1024) + b'"}'
    with pytest.raises(ManifestInvalid, match=f"is {len(padded):,} bytes; a manifest may be at most {MAX_MANIFEST_BYTES:,}"):
        parse_manifest(padded)


def test_an_unknown_key_of_any_length_is_named_bounded():
    data = raw()[:-1] + b', "' + b"k" * 200_000 + b'": 1}'
    with pytest.raises(ManifestInvalid) as info:
        parse_manifest(data)
    assert "Extra inputs are not permitted" in str(info.value) and "(200,000 characters)" in str(info.value)
    assert len(str(info.value)) < 500


def test_thousands_of_problems_are_counted_not_listed():
    prompts = [{"name": "system", "file": "s.txt", "sha256": "x"}] * 150
    with pytest.raises(ManifestInvalid) as info:
        parse_manifest(raw(prompts=prompts))
    assert str(info.value).count("prompts.") == 10 and "and 140 more problem(s)" in str(info.value)
    assert len(str(info.value)) < 2_000


def test_a_manifest_invalid_message_is_bounded_whatever_it_quotes():
    error = ManifestInvalid("x" * 1_000_000)
    assert len(str(error)) == MAX_REASON_CHARS and str(error).endswith("[cut: 1,000,000 characters in all]")


def test_shown_quotes_escapes_and_cuts():
    assert shown("ab cd") == "'ab cd'"
    assert shown("a\nb\x1b") == "'a\\nb\\x1b'"
    assert shown("z" * 500, 10) == "'zzzzzzzzzz'... (500 characters)"
    assert bounded("short") == "short"


# ---------------------------------------------------------------------- release keys
@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (f"releases/support-bot/{COMMIT[:8]} x/model-config.json", "commit segment 'cccccccc x' is not a git commit sha"),
        ("releases/support-bot/abc#1234/model-config.json", "commit segment 'abc#1234'"),
        ("releases/support-bot/abc:1234/model-config.json", "commit segment 'abc:1234'"),
        ("releases/support-bot/abc%201234/model-config.json", "commit segment 'abc%201234'"),
        ("releases/support-bot/abc*1234/model-config.json", "commit segment 'abc*1234'"),
        ("releases/support-bot/abcdef12\n/model-config.json", "commit segment 'abcdef12\\n'"),
        ("releases/support-bot//model-config.json", "commit segment ''"),
        ("releases/support-bot/a/model-config.json", "commit segment 'a'"),
        ("releases/support-bot/ABCDEF12/model-config.json", "commit segment 'ABCDEF12'"),
        (f"releases/support-bot/{'f' * 5000}/model-config.json", "(5,000 characters)"),
        (f"releases/support-bot/extra/{COMMIT}/model-config.json", "(1 path segment(s) too many)"),
        (f"releases/Support Bot/{COMMIT}/model-config.json", "service segment 'Support Bot' is not a service name"),
    ],
)
def test_a_key_no_execution_can_be_named_after_is_refused(key, reason):
    with pytest.raises(ManifestInvalid) as info:
        parse_release_key(key)
    assert reason in str(info.value) and str(info.value).isprintable() and len(str(info.value)) < 1_000


def test_a_refused_key_gets_a_record_id_step_functions_could_name_an_execution_after():
    a = refused_release_id("releases/support-bot/ab cd/model-config.json", "v1")
    assert a.startswith("support-bot-refused-") and len(a) <= 80
    assert a.replace("-", "").replace("_", "").isalnum()
    assert a == refused_release_id("releases/support-bot/ab cd/model-config.json", "v1")
    assert a != refused_release_id("releases/support-bot/ab cd/model-config.json", "v2")
    assert refused_release_id("releases/a b/c/model-config.json", "v1").startswith("unknown-refused-")


# ---------------------------------------------------------------------- model allow list
def test_the_allow_list_matches_model_ids_by_pattern():
    policy = ReleasePolicy(allowed_models=["anthropic.claude-3-5-haiku-*", "local.*"])
    assert policy.model_allowed("local.retrieval-small-v1:0")
    assert policy.model_allowed("anthropic.claude-3-5-haiku-20241022-v1:0")
    assert not policy.model_allowed("anthropic.claude-3-opus-20240229-v1:0")
    assert not policy.model_allowed("LOCAL.retrieval-small-v1:0")  # case-sensitive, as model ids are
    assert policy.allowed_models_text() == "'anthropic.claude-3-5-haiku-*', 'local.*'"


def test_without_an_allow_list_any_pinned_model_is_allowed_and_the_policy_says_so():
    policy = ReleasePolicy()
    assert policy.model_allowed("anything.pinned-v1:0")
    assert policy.allowed_models_text() == "not restricted (any pinned model id)"


@pytest.mark.parametrize("patterns", [[], ["local.* or anything"], ["x" * 129], ["a\nb"]])
def test_a_bad_allow_list_fails_at_registration(patterns):
    with pytest.raises(ValidationError, match="allowed_models"):
        ReleasePolicy(allowed_models=patterns)
