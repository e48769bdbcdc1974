"""Adding a service needs what the README says and nothing more.

The README: deploy the service's inference function named ``<stack>-svc-<service>`` with a
``live`` alias, register it (one SSM parameter under the stack's services prefix) and upload
its dataset. No template change: every pipeline role is scoped to that name prefix.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from modelgate_harness.control import put_dataset

from modelgate.adapters.lambda_alias import alias_state
from modelgate.errors import ConfigurationError
from modelgate.policy import ReleasePolicy, ServiceConfig, managed_function_prefix
from modelgate.registry import get_service

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "faq-bot"


def _inference_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(ROOT / "functions" / "inference" / "app.py", "app.py")
    return buffer.getvalue()


def _release_folder(tmp_path: Path, examples: Path) -> Path:
    folder = tmp_path / SERVICE
    shutil.copytree(examples / "v1", folder)
    manifest = json.loads((folder / "model-config.json").read_text())
    manifest["service"] = SERVICE
    (folder / "model-config.json").write_text(json.dumps(manifest))
    return folder


def _service_role(pipeline) -> str:
    """The service's own execution role: it reads only its own releases (README: "Adding a
    service"); the embedded AWS enforces it like AWS would."""
    iam = pipeline.control.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    name = f"{pipeline.local.stack_name}-svc-{SERVICE}-role"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    bucket_arn = f"arn:aws:s3:::{pipeline.control.bucket}"
    iam.put_role_policy(RoleName=name, PolicyName="ReadOwnReleases", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                                                "Resource": [f"{bucket_arn}/releases/{SERVICE}/*",
                                                             f"{bucket_arn}/reports/{SERVICE}/*/prompt-pin.json"]}]}))
    return arn


def _register(pipeline, function_name: str) -> None:
    """What an operator does for a new service (README: "Adding a service")."""
    control = pipeline.control
    lambda_ = control.client("lambda")
    role = _service_role(pipeline)
    lambda_.create_function(
        FunctionName=function_name, Runtime="python3.12", Role=role, Handler="app.lambda_handler",
        Code={"ZipFile": _inference_zip()}, Timeout=30,
        Environment={"Variables": {"MODEL_PROVIDER": "local", "MODEL_CONFIG_BUCKET": control.bucket,
                                   "POWERTOOLS_SERVICE_NAME": SERVICE}},
    )
    version = lambda_.publish_version(FunctionName=function_name)["Version"]
    lambda_.create_alias(FunctionName=function_name, Name="live", FunctionVersion=version)
    policy = ReleasePolicy(approval="auto", rollout="AllAtOnce", post_promotion_watch_seconds=1, min_cases=5)
    config = ServiceConfig(service=SERVICE, function_name=function_name,
                           dataset_key=f"datasets/{SERVICE}/dataset.jsonl", policy=policy)
    control.client("ssm").put_parameter(
        Name=control.outputs["ServicesPrefix"] + SERVICE, Type="String", Value=config.model_dump_json())
    put_dataset(control, SERVICE, pipeline.examples / "dataset.jsonl")


def test_a_second_service_releases_without_a_template_change(module_pipeline, tmp_path):
    pipeline = module_pipeline
    # Given a second service registered as the README says, beside the sample service
    function_name = managed_function_prefix(pipeline.control.stack_name) + SERVICE
    _register(pipeline, function_name)
    sample_before = pipeline.live()

    # When CI submits a release of it
    run = pipeline.driver.release(_release_folder(tmp_path, pipeline.examples), commit=pipeline.commit_for("faq-1"),
                                  decision=None)

    # Then it goes all the way through and its own live alias serves the candidate
    assert run.status == "Promoted", run.record.get("reason")
    assert "Promote" in run.path and "Rollback" not in run.path
    version, weights = alias_state(pipeline.control.client("lambda"), function_name, "live")
    assert version == str(run.record["candidate_version"]) and weights == {}
    # and the sample service was not touched
    assert pipeline.live() == sample_before


def test_a_service_outside_the_managed_name_prefix_is_refused_by_name(module_pipeline):
    # Given a registration whose function is not named <stack>-svc-<service>
    control = module_pipeline.control
    service = "outsider"  # not the module's other test's service: both share the stack
    config = ServiceConfig(service=service, function_name="someone-elses-function", dataset_key="d.jsonl")
    control.client("ssm").put_parameter(
        Name=control.outputs["ServicesPrefix"] + service, Type="String", Value=config.model_dump_json())
    # When the pipeline reads it / Then it says why, before any role is asked to touch it
    with pytest.raises(ConfigurationError, match="not named .*-svc-<service>"):
        get_service(control.client("ssm"), control.outputs["ServicesPrefix"], service,
                    function_prefix=managed_function_prefix(control.stack_name))
