"""LocalAWS as a whole: lifecycle, restoring every patch, invoke_event (`modelgate invoke`).

These tests start their own LocalAWS (no module-scoped one), so they can check what the
process looks like before and after.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from modelgate_emulator import (
    InvokeOutcome,
    LambdaInvokeError,
    LocalAWS,
    environ,
    invoke_event,
    run_function,
)


def moto_and_process_state() -> dict[str, Any]:
    from moto.awslambda.models import LambdaFunction
    from moto.awslambda.responses import LambdaResponse
    from moto.core import responses
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.events.models import Rule
    from moto.s3.models import FakeBucket
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
        WaitFunction,
    )
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    return {
        "invoke": LambdaSimpleBackend.invoke,
        "response_invoke": LambdaResponse.invoke,
        "layers": LambdaFunction._get_layers_data,
        "wait": WaitFunction._wait_interval,
        "start_execution": StepFunctionsParserBackend.start_execution,
        "send_task_failure": StepFunctionResponse.send_task_failure,
        "send_to_targets": Rule.send_to_targets,
        "bucket_permission": FakeBucket.get_permission,
        "action_names": responses.method_names_from_class,
        "environ": type(os.environ),
        "thread_start": threading.Thread.start,
        "credentials": os.environ.get("AWS_ACCESS_KEY_ID"),
        "region": os.environ.get("AWS_DEFAULT_REGION"),
    }


def test_local_aws_restores_every_patch_and_the_environment(fixture_template: Path) -> None:
    # Given the process before any LocalAWS
    before = moto_and_process_state()
    # When one runs (twice, one after the other, as a test session does)
    for _ in range(2):
        with LocalAWS(fixture_template, stack_name="lifecycle") as local:
            during = moto_and_process_state()
            assert local.invoke("OtherFunction", {})["module"] == "other"
            assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    # Then everything was patched while it ran and is exactly as before afterwards
    assert all(during[key] is not before[key] for key in ("invoke", "response_invoke", "wait", "start_execution", "send_to_targets", "bucket_permission",
                                                            "action_names"))
    assert moto_and_process_state() == before
    assert not environ.is_installed()


def test_local_aws_is_not_reentrant_and_its_stack_needs_it_running(fixture_template: Path) -> None:
    local = LocalAWS(fixture_template, stack_name="once")
    with pytest.raises(RuntimeError):
        local.stack
    with local:
        with pytest.raises(RuntimeError):
            local.__enter__()
    with pytest.raises(RuntimeError):
        local.stack


def test_a_second_stack_of_the_same_name_in_the_process_is_refused_while_one_runs(fixture_template: Path) -> None:
    # Given a stack running on the embedded AWS in this process
    with LocalAWS(fixture_template, stack_name="first") as first:
        tables = first.client("dynamodb").list_tables()["TableNames"]
        # When a second stack of the same name starts beside it (its tables would be the first one's)
        with pytest.raises(RuntimeError, match=r"a stack named 'first' is already running on the embedded AWS"):
            with LocalAWS(fixture_template, stack_name="first"):
                pass
        # Then the first one runs on untouched
        assert first.client("dynamodb").list_tables()["TableNames"] == tables
        assert first.invoke("OtherFunction", {})["module"] == "other"
    # And once it stopped, another of that name may start (and one whose deploy failed frees its name too)
    broken = fixture_template.parent / "no-such-template.yaml"
    with pytest.raises(FileNotFoundError):
        with LocalAWS(broken, stack_name="first"):
            pass
    with LocalAWS(fixture_template, stack_name="first") as again:
        assert again.invoke("OtherFunction", {})["module"] == "other"


def test_a_failed_deploy_leaves_nothing_patched(tmp_path: Path) -> None:
    before = moto_and_process_state()
    template = tmp_path / "template.yaml"
    template.write_text('AWSTemplateFormatVersion: "2010-09-09"\nResources:\n  S:\n    Type: AWS::Kinesis::Stream\n')
    with pytest.raises(Exception, match="AWS::Kinesis::Stream"):
        with LocalAWS(template):
            pass
    assert moto_and_process_state() == before


def test_public_api(fixture_template: Path) -> None:
    with LocalAWS(fixture_template, stack_name="api", time_factor=0.5) as local:
        # time
        assert local.time_factor == 0.5
        assert local.scale(10) == 5.0
        # stack lookups
        name = local.stack.function_name("EchoFunction")
        assert local.function_name("EchoFunction") == name
        assert local.function_name(name) == name
        assert local.stack.outputs["BucketName"] == local.stack.physical_id("Bucket")
        # a client inside the mock
        assert local.client("s3") is local.client("s3")
        assert local.stack.physical_id("Bucket") in [b["Name"] for b in local.client("s3").list_buckets()["Buckets"]]
        # invoke and its log
        assert local.invoke(name, {"x": 1})["event"] == {"x": 1}
        assert [r.function_name for r in local.invocations("EchoFunction")] == [name]
        with pytest.raises(LambdaInvokeError) as raised:
            local.invoke("FailFunction", {"kind": "gate"})
        assert raised.value.error_type == "GateFailed"
        assert raised.value.payload["stackTrace"]


def test_handlers_see_the_stack_through_modelgate_aws_clients(fixture_template: Path) -> None:
    # modelgate.adapters.clients caches clients; LocalAWS resets them so they are built inside the mock
    from modelgate.adapters import clients as aws

    with LocalAWS(fixture_template, stack_name="clients") as local:
        assert local.stack.physical_id("Table") in aws.client("dynamodb").list_tables()["TableNames"]
    with LocalAWS(fixture_template, stack_name="clients2") as local:
        tables = aws.client("dynamodb").list_tables()["TableNames"]
        assert tables == [local.stack.physical_id("Table")]


# ------------------------------------------------------------------ modelgate invoke
def test_run_function_runs_one_function_with_the_template_environment(fixture_template: Path, fixtures_dir: Path) -> None:
    outcome = run_function("EchoFunction", fixtures_dir / "events/echo.json", template_path=fixture_template)
    assert isinstance(outcome, InvokeOutcome)
    assert outcome.ok
    assert outcome.executed_version == "$LATEST"
    assert outcome.payload["event"] == {"hello": "world"}
    assert outcome.payload["env"]["WHO"] == "echo"
    assert '"hello": "world"' in outcome.to_json()


def test_run_function_returns_the_runtime_shaped_error(fixture_template: Path, fixtures_dir: Path) -> None:
    outcome = run_function("FailFunction", fixtures_dir / "events/gate_failed.json", template_path=fixture_template)
    assert not outcome.ok
    assert outcome.function_error == "Unhandled"
    assert outcome.payload["errorType"] == "GateFailed"
    assert set(outcome.payload) == {"errorMessage", "errorType", "requestId", "stackTrace"}


def test_invoke_event_returns_what_the_cli_prints(fixture_template: Path, fixtures_dir: Path) -> None:
    # `modelgate invoke` prints this payload and exits 1 when it is an error
    result = invoke_event("OtherFunction", fixtures_dir / "events/echo.json", template_path=fixture_template)
    error = invoke_event("FailFunction", fixtures_dir / "events/gate_failed.json", template_path=fixture_template)
    assert result == {"module": "other", "helpers": "other-helpers", "who": "other"}
    assert error["errorType"] == "GateFailed"


def test_run_function_by_alias_and_inline_event(fixture_template: Path) -> None:
    outcome = run_function("ServiceFunction", event={}, qualifier="live", template_path=fixture_template)
    assert (outcome.executed_version, outcome.payload) == ("1", {"version": "1", "config": "v1"})
    with pytest.raises(ValueError):
        run_function("ServiceFunction", "x.json", event={}, template_path=fixture_template)


def test_each_start_gets_a_new_default_session_reading_models_through_one_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from modelgate_emulator.runtime import _default_session_with_shared_models

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    _default_session_with_shared_models()
    first = boto3.DEFAULT_SESSION
    _default_session_with_shared_models()
    second = boto3.DEFAULT_SESSION
    assert first is not None and second is not None and second is not first
    loader = second._session.get_component("data_loader")
    assert first._session.get_component("data_loader") is loader
    assert len(loader.search_paths) == len(set(loader.search_paths))  # boto3 adds its folder once, not per session
    assert loader.load_service_model("sqs", "service-2")["metadata"]["serviceId"] == "SQS"
