"""The template and the state machine definition: linted, and consistent with each other."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cfn_flip import load_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachine" / "release_pipeline.asl.json"


def _template() -> dict:
    return load_yaml(TEMPLATE.read_text())


def _sam() -> str:
    candidate = os.environ.get("MODELGATE_SAM") or shutil.which("sam")
    if not candidate or not Path(candidate).exists():
        pytest.fail("SAM CLI not found: run the tests through `make test` (it installs it in .venv-sam)")
    return candidate


def _checkov() -> str:
    """checkov lives in its own virtualenv (.venv-checkov, made by `make venv`): its many
    dependencies never touch the project's."""
    candidate = os.environ.get("MODELGATE_CHECKOV") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    if not Path(candidate).exists():
        pytest.skip(f"checkov not installed at {candidate}: `make venv` creates .venv-checkov (checkov==3.3.30)")
    return candidate


# Offline: no call to the vendor's platform for its policy mappings and guidelines
# (--skip-download, BC_SKIP_MAPPING) nor to PyPI for a newer version (CKV_SKIP_PACKAGE_UPDATE_CHECK).
CHECKOV_OFFLINE_ENV = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "LOG_LEVEL": "WARNING"}


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    """One checkov run over template.yaml (it takes seconds), shared by the checks below."""
    result = subprocess.run(
        [_checkov(), "--file", str(TEMPLATE), "--framework", "cloudformation", "--skip-download", "--compact",
         "--output", "json"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **CHECKOV_OFFLINE_ENV},
    )  # fmt: skip
    try:
        report = json.loads(result.stdout)
    except ValueError:
        output = result.stdout[-2000:] + result.stderr[-2000:]
        pytest.fail(f"checkov gave no JSON report (exit {result.returncode}):\n{output}")
    assert isinstance(report, dict) and report.get("check_type") == "cloudformation", report
    return report


def test_checkov_reports_no_failed_check(checkov_report):
    # Given checkov's report on the template / Then it read every resource and failed none
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] == len(_template()["Resources"]), summary
    assert summary["passed"] > 0, summary
    failed = checkov_report["results"]["failed_checks"]
    assert not failed, "checkov failed checks:\n" + "\n".join(
        f"  {f['check_id']} {f['resource']}: {f['check_name']}" for f in failed
    )


def test_every_checkov_skip_is_inline_with_a_reason(checkov_report):
    # Skips live in the template, next to the resource, each with the reason it holds
    assert not list(ROOT.glob(".checkov.y*ml")), "checkov skips belong in the template, not a config file"
    skipped = checkov_report["results"]["skipped_checks"]
    assert len(skipped) == checkov_report["summary"]["skipped"]
    unexplained = [
        f"{s['check_id']} {s['resource']}"
        for s in skipped
        if len(s["check_result"].get("suppress_comment", "")) < 40
        or s["check_result"]["suppress_comment"] == "No comment provided"
    ]
    assert not unexplained, "checkov skips without a reason: " + ", ".join(unexplained)


def _statelint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "statelint"), str(path)], capture_output=True, text=True, cwd=ROOT
    )


def test_statelint_is_clean():
    # Given the state machine definition / When statelint reads it / Then it reports nothing
    result = _statelint(ASL)
    assert result.returncode == 0, result.stdout + result.stderr


def test_statelint_refuses_what_step_functions_refuses(tmp_path):
    # The check can fail: an integer BackoffRate (Step Functions wants a float) is reported.
    definition = json.loads(ASL.read_text())
    definition["States"]["Validate"]["Retry"][0]["BackoffRate"] = 2
    bad = tmp_path / "bad.asl.json"
    bad.write_text(json.dumps(definition))
    result = _statelint(bad)
    assert result.returncode != 0 and "BackoffRate" in result.stdout + result.stderr


def test_cfn_lint_is_clean():
    # Given the template / When cfn-lint reads it / Then it reports nothing
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(TEMPLATE)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_is_clean():
    result = subprocess.run(
        [_sam(), "validate", "--lint", "--template", str(TEMPLATE), "--region", "us-east-1"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_every_substitution_in_the_asl_is_given_by_the_template():
    # Given the ASL's ${...} placeholders and the state machine's DefinitionSubstitutions
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    machine = _template()["Resources"]["ReleasePipeline"]["Properties"]
    given = set(machine["DefinitionSubstitutions"])
    # Then each placeholder is substituted and nothing substituted is unused
    assert placeholders == given


def test_asl_has_no_hard_coded_arns_and_every_task_has_a_timeout():
    definition = json.loads(ASL.read_text())
    assert "arn:aws:lambda" not in ASL.read_text()
    assert definition["TimeoutSeconds"] > 0
    for name, state in definition["States"].items():
        if state["Type"] == "Task":
            assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name
            for retry in state.get("Retry", []):
                assert retry["ErrorEquals"] != ["States.ALL"], f"{name} blanket-retries States.ALL"


def test_every_function_has_code_a_handler_and_a_sample_event():
    resources = _template()["Resources"]
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    assert functions
    for logical_id, resource in functions.items():
        code = ROOT / resource["Properties"]["CodeUri"]
        assert (code / "app.py").is_file(), logical_id
        assert "def lambda_handler" in (code / "app.py").read_text(), logical_id
        events = list((ROOT / "events" / code.name).glob("*.json"))
        assert events, f"{logical_id} has no sample event under events/{code.name}/"


def test_no_hard_coded_physical_names():
    text = TEMPLATE.read_text()
    for key in ("BucketName:", "TableName: ", "FunctionName: ", "TopicName: "):
        for line in text.splitlines():
            if line.strip().startswith(key) and "!" not in line:
                pytest.fail(f"hard-coded physical name: {line.strip()}")


def test_lambda_task_timeouts_outlast_their_functions():
    # A task state that times out before its function does reports States.Timeout for work
    # that is still running (and may still succeed): each Lambda task waits at least as long
    # as the function's own timeout.
    template = _template()
    resources = template["Resources"]
    default = template["Globals"]["Function"]["Timeout"]
    timeouts = {
        f"${{{logical_id}Arn}}": r["Properties"].get("Timeout", default)
        for logical_id, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
    }

    def tasks(states):
        for name, state in states.items():
            yield name, state
            for nested in ("ItemProcessor", "Iterator"):
                if nested in state:
                    yield from tasks(state[nested]["States"])

    checked = 0
    for name, state in tasks(json.loads(ASL.read_text())["States"]):
        function = (state.get("Parameters") or {}).get("FunctionName")
        if state["Type"] == "Task" and function in timeouts and "TimeoutSeconds" in state:
            assert state["TimeoutSeconds"] >= timeouts[function], (
                f"{name}: {state['TimeoutSeconds']} s < {function} {timeouts[function]} s"
            )
            checked += 1
    assert checked >= 10


def test_the_managed_function_has_time_for_real_generation():
    # Bedrock answers when the whole completion is generated: a large model writing a
    # release's max_tokens takes minutes, far past the 30 s the pipeline's own functions need
    service = _template()["Resources"]["SampleServiceFunction"]["Properties"]
    assert 180 <= service["Timeout"] <= 900
