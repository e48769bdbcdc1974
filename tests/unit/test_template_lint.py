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
