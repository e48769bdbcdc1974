"""The design stays inside AWS's limits, which the embedded AWS enforces (modelgate_emulator.limits):
a release with 100 prompt files publishes and is promoted; an artefact that would blow a limit
is refused at Validate with a reason that names it, and live is untouched."""

from __future__ import annotations

import json
import shutil

from conftest import SETUP_BAKE_SECONDS
from modelgate_emulator.limits import LAMBDA_ENVIRONMENT_BYTES, environment_measure
from modelgate_harness.driver import ReleaseRun
from modelgate_harness.polling import wait_until

from modelgate.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_PROMPT_FILES,
    PIN_PROMPTS_KEY,
    PIN_PROMPTS_VERSION,
    release_id_for,
    sha256_hex,
)


def release_with_prompts(pipeline, tmp_path, count: int):
    """v2 (the better prompt) plus ``count - 1`` more prompt templates, each in its own file."""
    folder = tmp_path / f"{count}-prompts"
    shutil.copytree(pipeline.examples / "v2", folder)
    manifest = json.loads((folder / "model-config.json").read_text())
    for index in range(1, count):
        name = f"snippet_{index:03d}"
        text = f"Snippet {index}: answer the customer's {{question}} politely ({index}).\n"
        (folder / "prompts" / f"{name}.txt").write_text(text)
        manifest["prompts"].append({"name": name, "file": f"prompts/{name}.txt", "sha256": sha256_hex(text.encode())})
    (folder / "model-config.json").write_text(json.dumps(manifest, indent=2))
    return folder, manifest


def test_a_release_with_100_prompt_files_publishes_and_is_promoted(shared_live_v2, tmp_path):
    pipeline = shared_live_v2
    folder, manifest = release_with_prompts(pipeline, tmp_path, 100)
    assert len(manifest["prompts"]) == 100
    # (the set-up releases' shorter bakes: publishing 100 prompts, not the canary, is the subject)
    pipeline.set_policy(approval="auto", min_canary_invocations=3, bake_seconds=SETUP_BAKE_SECONDS,
                        post_promotion_watch_seconds=SETUP_BAKE_SECONDS)
    traffic = pipeline.traffic()
    traffic.start()
    try:
        run = pipeline.driver.release(folder, commit=pipeline.commit_for("100-prompts"), decision=None)
    finally:
        traffic.stop()
    assert run.status == "Promoted", run.record.get("reason")
    assert "PublishCandidate" in run.path and "Evaluate" in run.path
    # The candidate's environment pins the release in constant size, inside Lambda's 4 KB...
    lam = pipeline.control.client("lambda")
    version = pipeline.live()[0]
    variables = lam.get_function_configuration(FunctionName=pipeline.function, Qualifier=version)["Environment"][
        "Variables"
    ]
    assert len(environment_measure(variables).encode()) < LAMBDA_ENVIRONMENT_BYTES / 2
    # ...and its prompt pin names all 100 files' versions
    pin = pipeline.control.client("s3").get_object(
        Bucket=pipeline.control.bucket, Key=variables[PIN_PROMPTS_KEY], VersionId=variables[PIN_PROMPTS_VERSION]
    )
    assert len(json.loads(pin["Body"].read())["prompt_versions"]) == 100


def test_an_artefact_that_would_blow_the_state_limit_is_refused_by_name(shared_live_v2, tmp_path):
    pipeline = shared_live_v2
    live_before, versions_before = pipeline.live(), pipeline.versions()
    # Given 3,000 prompt entries (about 400 KB of manifest: the release's state would exceed
    # Step Functions' 256 KiB), uploaded around the CLI's own checks as a hostile CI could
    _, manifest = release_with_prompts(pipeline, tmp_path, 3000)
    commit = pipeline.commit_for("hostile")
    manifest["source"]["commit"] = commit
    key = f"releases/support-bot/{commit}/model-config.json"
    put = pipeline.control.client("s3").put_object(Bucket=pipeline.control.bucket, Key=key, Body=json.dumps(manifest))
    release_id = release_id_for("support-bot", commit, key, put["VersionId"])
    ledger = pipeline.control.ledger()
    record = wait_until(lambda: (r := ledger.get(release_id)) and r.get("execution_arn") and r,
                        pipeline.driver.timeout, "intake")
    run = pipeline.driver.finish(ReleaseRun(release_id, record["execution_arn"]))
    # Then Validate refuses it by its size, before reading it, naming the limit (a manifest of
    # 201 to 3,000 prompt entries under that size is refused for their number: the corpus in
    # test_hostile_uploads.py); nothing was published and live is untouched
    assert run.status == "Invalid"
    assert run.path == ["Validate", "RecordOutcome", "AttestEnd", "ReleaseFailed"]
    assert f"a manifest may be at most {MAX_MANIFEST_BYTES:,} bytes" in run.record["reason"]
    assert len(json.dumps(manifest)) > MAX_MANIFEST_BYTES and MAX_PROMPT_FILES < 3000
    assert pipeline.versions() == versions_before
    assert pipeline.live() == live_before
