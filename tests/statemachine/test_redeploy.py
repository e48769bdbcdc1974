"""`sam deploy` of a changed managed function never moves `live` (Modelgate owns the alias).

The stack is redeployed locally (a CloudFormation stack update, LocalAWS.redeploy) with the
sample service's code changed, once while a release holds canary weight on `live` and once
after a promotion. `live`'s version and weights stay as the pipeline left them, the stack
publishes no version, and the next release still goes through. The tests share one stack
(``shared_live_v2``): each redeploys it with a change of its own and leaves live promoted.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from conftest import HANG_GUARD_SECONDS, SETUP_BAKE_SECONDS
from modelgate_harness.polling import wait_until

from modelgate.manifest import PIN_KEY, is_pinned

ROOT = Path(__file__).resolve().parents[2]
_LOCAL_URI = re.compile(r"^(\s+(?:CodeUri|ContentUri|DefinitionUri): )(\S+)$", re.MULTILINE)


def changed_service_template(tmp_path: Path) -> Path:
    """template.yaml with the sample service's code in a changed copy (as the next `sam build`
    would upload a new zip); every other local path points at the project, unchanged."""
    code = tmp_path / "inference"
    shutil.copytree(ROOT / "functions" / "inference", code, ignore=shutil.ignore_patterns("__pycache__"))
    app = code / "app.py"
    # (a change of this test's own: the module's tests redeploy one stack, each to new code)
    app.write_text(app.read_text() + f"\n# A change to the managed function's code, deployed with `sam deploy` ({tmp_path.name}).\n")
    text = _LOCAL_URI.sub(
        lambda m: m[1] + str((ROOT / m[2]).resolve()) + ("/" if m[2].endswith("/") else ""),
        (ROOT / "template.yaml").read_text(),
    )
    original = f"CodeUri: {(ROOT / 'functions' / 'inference').resolve()}/"
    assert text.count(original) == 1, "the sample service's CodeUri moved in template.yaml"
    path = tmp_path / "template.yaml"
    path.write_text(text.replace(original, f"CodeUri: {code}/"))
    return path


def redeploy_with_changed_code(pipeline, tmp_path: Path) -> None:
    lam = pipeline.control.client("lambda")
    sha_before = lam.get_function_configuration(FunctionName=pipeline.function)["CodeSha256"]
    stack = pipeline.local.redeploy(changed_service_template(tmp_path))
    assert stack.functions["SampleServiceFunction"].code_dir == (tmp_path / "inference").resolve()
    assert lam.get_function_configuration(FunctionName=pipeline.function)["CodeSha256"] != sha_before


def release_after_redeploy(pipeline, label: str) -> None:
    """The next release publishes from the redeployed code and is promoted (its bakes are not
    what is tested: 300 nominal s per step, as conftest's set-up promotions)."""
    pipeline.set_policy(approval="auto", bake_seconds=SETUP_BAKE_SECONDS, post_promotion_watch_seconds=SETUP_BAKE_SECONDS,
                        min_canary_invocations=3)
    traffic = pipeline.traffic()
    traffic.start()
    try:
        run = pipeline.driver.release(pipeline.examples / "v2", commit=pipeline.commit_for(label), decision=None)
    finally:
        traffic.stop()
    assert run.status == "Promoted", run.record.get("reason")
    version, weights = pipeline.live()
    assert weights == {}
    lam = pipeline.control.client("lambda")
    config = lam.get_function_configuration(FunctionName=pipeline.function, Qualifier=version)
    assert is_pinned(config["Environment"]["Variables"]), config["Environment"]["Variables"]
    assert config["CodeSha256"] == lam.get_function_configuration(FunctionName=pipeline.function)["CodeSha256"]


def test_a_redeploy_during_a_canary_leaves_live_and_its_weights(shared_live_v2, tmp_path):
    pipeline = shared_live_v2
    # Given a release baking on `live` with canary weight
    pipeline.set_policy(approval="auto", bake_seconds=30000, min_canary_invocations=1)  # a 60 s bake here
    canary = pipeline.driver.submit(pipeline.examples / "v4", commit=pipeline.commit_for("v4-canary"))
    ledger = pipeline.control.ledger()
    # (a bound for a hung pipeline, not a speed check: the evaluation before the canary took over 30 real s at load ~17)
    wait_until(lambda: (ledger.get(canary.release_id) or {}).get("status") == "Baking", HANG_GUARD_SECONDS, "the canary")
    live_before = pipeline.live()
    assert live_before[1], "the canary holds weight on live"
    versions_before = pipeline.versions()

    # When the stack is redeployed with the service's code changed
    redeploy_with_changed_code(pipeline, tmp_path)

    # Then live still serves the same version with the same canary weight, and no version was published
    assert pipeline.live() == live_before
    assert pipeline.versions() == versions_before
    assert ledger.get(canary.release_id)["status"] == "Baking"
    # And the next release (it supersedes the canary) publishes from the new code and is promoted
    release_after_redeploy(pipeline, "v2-after-canary-redeploy")
    assert ledger.get(canary.release_id)["status"] == "Superseded"


def test_a_redeploy_after_a_promotion_leaves_live(shared_live_v2, tmp_path):
    pipeline = shared_live_v2
    live_before = pipeline.live()
    assert live_before[1] == {}
    lam = pipeline.control.client("lambda")
    assert (
        PIN_KEY
        in lam.get_function_configuration(FunctionName=pipeline.function, Qualifier=live_before[0])["Environment"][
            "Variables"
        ]
    )
    versions_before = pipeline.versions()

    redeploy_with_changed_code(pipeline, tmp_path)

    assert pipeline.live() == live_before
    assert pipeline.versions() == versions_before
    release_after_redeploy(pipeline, "v2-after-promotion-redeploy")
    assert pipeline.live()[0] != live_before[0]
