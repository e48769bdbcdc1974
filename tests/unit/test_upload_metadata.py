"""The provenance `modelgate submit` writes as S3 object metadata, and how Validate reads it back."""

from __future__ import annotations

import hashlib

import pytest

from modelgate.errors import ManifestInvalid
from modelgate.manifest import Manifest
from modelgate.upload_metadata import (
    BRANCH_METADATA,
    EVAL_ACCURACY_METADATA,
    EVAL_CASES_METADATA,
    CiEvaluation,
    check_against,
    check_size,
    metadata_for,
    read_upload_metadata,
    release_fingerprint,
)

COMMIT = "c" * 40


def manifest(*, branch: str = "main", commit: str = COMMIT, prompt: bytes = b"You answer.\n", temperature=0.2):
    return Manifest.model_validate({
        "service": "support-bot",
        "model": {"provider": "local", "model_id": "local.retrieval-small-v1:0"},
        "parameters": {"temperature": temperature},
        "prompts": [{"name": "system", "file": "prompts/system.txt", "sha256": hashlib.sha256(prompt).hexdigest()}],
        "source": {"commit": commit, "branch": branch},
    })


def evaluation(m: Manifest, **changes) -> CiEvaluation:
    return CiEvaluation(**{"verdict": "pass", "accuracy": 0.975, "live_accuracy": 0.675, "cases": 40,
                           "release": release_fingerprint(m), **changes})


def test_the_fingerprint_names_model_parameters_and_prompts_but_not_the_source():
    base = manifest()
    # the same release submitted from another commit or branch is the same release
    assert release_fingerprint(manifest(branch="feature/x", commit="d" * 40)) == release_fingerprint(base)
    # one byte of a prompt, or one parameter, makes another release
    assert release_fingerprint(manifest(prompt=b"You answer!\n")) != release_fingerprint(base)
    assert release_fingerprint(manifest(temperature=0.3)) != release_fingerprint(base)


def test_what_submit_writes_reads_back_as_it_was_even_a_branch_outside_ascii():
    # Given a branch with characters S3 metadata can't carry as is (values are US-ASCII over REST)
    m = manifest(branch="feature/naïve-100%")
    written = metadata_for(COMMIT, m.source.branch, evaluation(m))
    # Then the value sent is ASCII, and Validate reads back exactly what was meant
    assert written[BRANCH_METADATA] == "feature/na%C3%AFve-100%25" and written[BRANCH_METADATA].isascii()
    assert written[EVAL_ACCURACY_METADATA] == "0.975" and written[EVAL_CASES_METADATA] == "40"
    read = read_upload_metadata(written)
    assert read.commit == COMMIT and read.branch == "feature/naïve-100%" and read.evaluation == evaluation(m)
    check_against(read, m, "releases/x")  # consistent: no error


def test_an_upload_without_provenance_reads_as_none():
    read = read_upload_metadata({"modelgate-author": "alice"})
    assert read.commit is None and read.branch is None and read.evaluation is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"modelgate-eval-cases": None}, "incomplete: modelgate-eval-cases missing"),
        ({"modelgate-eval-accuracy": "high"}, "modelgate-eval-accuracy metadata is 'high', not a number"),
        ({"modelgate-eval-accuracy": "nan"}, "not a number"),
        ({"modelgate-eval-accuracy": "1.5"}, "less than or equal to 1"),
        ({"modelgate-eval-cases": "-3"}, "not a count"),
        ({"modelgate-eval-verdict": "maybe"}, "verdict"),
        ({"modelgate-eval-release": "abc"}, "release"),
        ({"modelgate-branch": "bad%ff"}, "not percent-encoded UTF-8"),
    ],
)
def test_malformed_provenance_is_refused_naming_the_entry(change, problem):
    m = manifest()
    meta = metadata_for(COMMIT, "main", evaluation(m))
    for key, value in change.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    with pytest.raises(ManifestInvalid, match=problem):
        read_upload_metadata(meta)


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        (lambda m: metadata_for("d" * 40, "main", None), "modelgate-commit metadata is 'd{40}' but the manifest names commit c{40}"),
        (lambda m: metadata_for(COMMIT, "release", None), "modelgate-branch metadata is 'release' but the manifest names branch 'main'"),
        (lambda m: metadata_for(COMMIT, "main", evaluation(manifest(prompt=b"other\n"))), "evaluation metadata is of another release"),
    ],
)
def test_provenance_that_contradicts_the_manifest_is_refused(meta, problem):
    m = manifest()
    with pytest.raises(ManifestInvalid, match=problem):
        check_against(read_upload_metadata(meta(m)), m, "releases/support-bot/x/model-config.json")


def test_metadata_over_s3s_2_kb_is_refused_before_upload():
    # S3: "the user-defined metadata is limited to 2 KB" (UTF-8 bytes of keys and values)
    check_size(metadata_for(COMMIT, "b" * 256, evaluation(manifest())))  # the longest branch a manifest allows fits
    with pytest.raises(ManifestInvalid, match="metadata would be 2,0[0-9]{2} bytes; S3 accepts at most 2,048"):
        check_size({"modelgate-branch": "%C3%AF" * 340})
