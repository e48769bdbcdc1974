"""Every sample event under events/ runs through its handler on the local runtime.

The same files serve `sam local invoke -e` on a deployed stack; here the stack is the
template on the embedded AWS, so the sample's resource names are mapped onto it first.
Each event must be parsed by its handler: it either succeeds or ends in a named
Modelgate error that the state machine catches by name - never a parsing or type error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cfn_flip import load_yaml
from modelgate_emulator import LocalAWS

from modelgate import errors

ROOT = Path(__file__).resolve().parents[2]
EVENTS = sorted((ROOT / "events").glob("*/*.json"))
SAMPLE_BUCKET = "modelgate-dev-artifactbucket-1a2b3c4d5e6f"
SAMPLE_FUNCTION = "modelgate-dev-SampleServiceFunction-AbCdEf123456"

# What each sample does on a fresh stack (no release has run there yet).
EXPECTED = {
    "intake/manifest-uploaded.json": None,            # starts the pipeline
    "validate/release-uploaded.json": "ManifestInvalid",  # the sample artefact isn't in the bucket
    "acquire_lock/validated.json": None,
    "publish_candidate/locked.json": None,            # publishes version 2 of the sample service
    "plan_evaluation/published.json": "DatasetInvalid",  # no dataset uploaded on a fresh stack
    "evaluate/shard.json": "DatasetInvalid",          # nor the pinned dataset version
    "reduce_evaluation/shards-done.json": "EvaluationFailed",  # nor the shard's results
    "gate/evaluated.json": "EvaluationFailed",         # the sample's report isn't in the bucket
    "register/gate-passed.json": None,
    "request_approval/waiting.json": None,
    "shift_traffic/approved.json": "ResourceNotFoundException",  # candidate 3 doesn't exist there
    "start_bake/canary.json": None,
    "check_canary/baked.json": None,                  # no data yet: the policy waits (extends the bake)
    "send_synthetic/not-enough-traffic.json": "DatasetInvalid",  # no dataset on a fresh stack
    "promote/healthy.json": "ResourceNotFoundException",   # version 3 doesn't exist there
    "rollback/canary-alarm.json": "ResourceNotFoundException",  # nor does version 2
    "record_outcome/gate-failed.json": None,
    "on_alarm/canary-alarm.json": None,
    "inference/question.json": "ModelNotConfigured",
    # HTTP pages, never Lambda errors: the samples are signed with the documented example key,
    # not the stack's, so both answer 403 "not valid" (tests/unit/test_approval_links.py runs them
    # with the example key and shows them approving)
    "approval_callback/get-confirm.json": None,
    "approval_callback/post-approve.json": None,
}


def code_dirs() -> dict[str, str]:
    resources = load_yaml((ROOT / "template.yaml").read_text())["Resources"]
    return {
        Path(r["Properties"]["CodeUri"]).name: logical_id
        for logical_id, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
    }


@pytest.fixture
def local():
    """A fresh stack for each sample: no sample sees what another one did."""
    with LocalAWS(ROOT / "template.yaml", parameters={"ModelProvider": "local", "LogLevel": "WARNING"},
                  time_factor=0.002) as local:
        yield local


def test_every_event_file_has_an_expectation():
    assert {f"{p.parent.name}/{p.name}" for p in EVENTS} == set(EXPECTED)


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_event_runs_through_its_handler(local, path):
    # Given the sample event, mapped onto the local stack's physical names
    outputs = local.stack.outputs
    text = (path.read_text()
            .replace(SAMPLE_BUCKET, outputs["ArtifactBucketName"])
            .replace(SAMPLE_FUNCTION, outputs["SampleServiceFunctionName"])
            .replace("modelgate-dev-canary-", f"{local.stack_name}-canary-"))
    logical_id = code_dirs()[path.parent.name]
    # When it is invoked the way Lambda would
    response = local.client("lambda").invoke(
        FunctionName=local.function_name(logical_id), Payload=text.encode()
    )
    payload = json.loads(response["Payload"].read())
    expected = EXPECTED[f"{path.parent.name}/{path.name}"]
    # Then it succeeds, or fails with the named Modelgate error this sample leads to
    if expected is None:
        assert "FunctionError" not in response, payload
    else:
        assert response.get("FunctionError") == "Unhandled"
        assert payload["errorType"] == expected, payload
        assert isinstance(getattr(errors, expected, None), type) or expected.endswith("Exception")
