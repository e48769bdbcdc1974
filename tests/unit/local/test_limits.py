"""AWS limits on the embedded AWS: refused as AWS refuses them (error code and message).

The sources are in modelgate_emulator/limits.py. Each test also shows the largest value
that is still accepted, so a limit enforced too early fails here as well.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from modelgate_emulator import LocalAWS
from modelgate_emulator.limits import (
    LAMBDA_ENVIRONMENT_BYTES,
    LAMBDA_SYNC_PAYLOAD_BYTES,
    SFN_CAUSE_CHARS,
    SFN_ERROR_CHARS,
    SFN_PAYLOAD_CHARS,
    environment_measure,
    environment_problem,
)
from modelgate_emulator.stepfunctions import failure_of


def _variables_of_size(total: int) -> dict[str, str]:
    """One variable whose JSON measure (``{"PAD":"..."}``) is exactly ``total`` bytes."""
    overhead = len(environment_measure({"PAD": ""}))
    return {"PAD": "x" * (total - overhead)}


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]


# ---------------------------------------------------------------- Lambda environment
def test_environment_measure_is_the_json_lambda_quotes_back() -> None:
    assert environment_problem(_variables_of_size(LAMBDA_ENVIRONMENT_BYTES)) is None
    problem = environment_problem(_variables_of_size(LAMBDA_ENVIRONMENT_BYTES + 1))
    assert problem is not None
    assert problem.startswith("Lambda was unable to configure your environment variables because")
    assert 'exceeded the 4KB limit. String measured: {"PAD":"xxx' in problem


def test_update_function_configuration_refuses_an_environment_over_4_kb(local_aws: LocalAWS) -> None:
    lam = local_aws.client("lambda")
    name = local_aws.function_name("OtherFunction")
    # Given a function, an environment of exactly 4 KB is accepted
    lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": _variables_of_size(LAMBDA_ENVIRONMENT_BYTES)}
    )
    # When one byte more is set
    with pytest.raises(ClientError) as exc:
        lam.update_function_configuration(
            FunctionName=name, Environment={"Variables": _variables_of_size(LAMBDA_ENVIRONMENT_BYTES + 1)}
        )
    # Then Lambda's InvalidParameterValueException names the 4KB limit, and nothing changed
    code, message = _error(exc)
    assert code == "InvalidParameterValueException"
    assert "exceeded the 4KB limit. String measured: " in message
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    current = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    assert len(environment_measure(current)) == LAMBDA_ENVIRONMENT_BYTES
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"WHO": "other"}})


def test_create_function_refuses_an_environment_over_4_kb(local_aws: LocalAWS) -> None:
    lam = local_aws.client("lambda")
    other = lam.get_function_configuration(FunctionName=local_aws.function_name("OtherFunction"))
    args: dict[str, Any] = {
        "FunctionName": "limits-too-much-environment",
        "Role": other["Role"],
        "Runtime": "python3.12",
        "Handler": "app.lambda_handler",
        "Code": {"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        "Environment": {"Variables": {"A": "1", **_variables_of_size(LAMBDA_ENVIRONMENT_BYTES)}},
    }
    with pytest.raises(ClientError) as exc:
        lam.create_function(**args)
    assert _error(exc)[0] == "InvalidParameterValueException"
    assert "exceeded the 4KB limit" in _error(exc)[1]
    with pytest.raises(ClientError) as missing:
        lam.get_function(FunctionName="limits-too-much-environment")
    assert _error(missing)[0] == "ResourceNotFoundException"


# ---------------------------------------------------------------- Lambda payloads
def test_a_synchronous_request_over_6_mb_is_refused_with_413(local_aws: LocalAWS) -> None:
    lam = local_aws.client("lambda")
    name = local_aws.function_name("EchoFunction")
    before = len(local_aws.invocations("EchoFunction"))
    body = json.dumps({"pad": "x" * LAMBDA_SYNC_PAYLOAD_BYTES}).encode()
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=name, Payload=body)
    code, message = _error(exc)
    assert code == "RequestEntityTooLargeException"
    assert message == "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert len(local_aws.invocations("EchoFunction")) == before  # the handler never ran


def test_a_response_over_6_mb_is_the_runtimes_payload_size_error(local_aws: LocalAWS) -> None:
    # Given a request just under 6 MB that the echo function returns whole (plus its probe)
    event = {"pad": "x" * (LAMBDA_SYNC_PAYLOAD_BYTES - 200), "env_keys": []}
    response = local_aws.client("lambda").invoke(
        FunctionName=local_aws.function_name("EchoFunction"), Payload=json.dumps(event).encode()
    )
    # Then the invocation "succeeds" at the API with the runtime's error, as on AWS
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    body = json.loads(response["Payload"].read())
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    assert body["errorMessage"].startswith("Response payload size exceeded maximum allowed payload size")


# ---------------------------------------------------------------- weighted alias
def test_an_alias_routes_to_one_additional_version_only(local_aws: LocalAWS) -> None:
    lam = local_aws.client("lambda")
    name = local_aws.function_name("ServiceFunction")
    versions = []
    for config in ("limits-a", "limits-b"):
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"MODEL_CONFIG": config}})
        versions.append(lam.publish_version(FunctionName=name)["Version"])
    live = lam.get_alias(FunctionName=name, Name="live")
    # One additional version is accepted...
    lam.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {versions[0]: 0.1}})
    # ...two are refused, and the alias keeps its routing
    two = {versions[0]: 0.1, versions[1]: 0.1}
    with pytest.raises(ClientError) as exc:
        lam.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": two})
    code, message = _error(exc)
    assert code == "ValidationException"
    assert message.startswith("1 validation error detected: Value '{")
    assert message.endswith(
        "at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Member must have length less than or equal to 1"
    )
    assert lam.get_alias(FunctionName=name, Name="live")["RoutingConfig"] == {
        "AdditionalVersionWeights": {versions[0]: 0.1}
    }
    with pytest.raises(ClientError) as created:
        lam.create_alias(
            FunctionName=name,
            Name="limits",
            FunctionVersion=live["FunctionVersion"],
            RoutingConfig={"AdditionalVersionWeights": two},
        )
    assert _error(created)[0] == "ValidationException"
    lam.update_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion=live["FunctionVersion"],
        RoutingConfig={"AdditionalVersionWeights": {}},
    )


# ---------------------------------------------------------------- Step Functions
def _start(local: LocalAWS, payload: dict[str, Any]) -> str:
    sfn = local.client("stepfunctions")
    return str(
        sfn.start_execution(stateMachineArn=local.stack.outputs["MachineArn"], input=json.dumps(payload))[
            "executionArn"
        ]
    )


def test_send_task_failure_refuses_a_cause_over_32768_characters(
    local_aws: LocalAWS, poll: Callable[..., Any], task_token: Callable[..., Any]
) -> None:
    sfn = local_aws.client("stepfunctions")
    arn = _start(local_aws, {"mode": "token", "raise": False})
    token = poll(lambda: task_token(local_aws, arn), what="the task token")
    # When the cause is one character too long, or the error name is
    for kwargs, member, maximum in (
        ({"error": "E", "cause": "c" * (SFN_CAUSE_CHARS + 1)}, "cause", SFN_CAUSE_CHARS),
        ({"error": "E" * (SFN_ERROR_CHARS + 1), "cause": "c"}, "error", SFN_ERROR_CHARS),
    ):
        with pytest.raises(ClientError) as exc:
            sfn.send_task_failure(taskToken=token, **kwargs)
        # Then the API refuses it (the value is sensitive: not echoed) and the task still waits
        assert _error(exc) == (
            "ValidationException",
            (
                f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {maximum}"
            ),
        )
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    # And a cause of exactly 32,768 characters is accepted
    sfn.send_task_failure(taskToken=token, error="TooLong", cause="c" * SFN_CAUSE_CHARS)
    assert local_aws.wait_for_execution(arn)["status"] == "FAILED"
    assert failure_of(sfn, arn) == {"error": "TooLong", "cause": "c" * SFN_CAUSE_CHARS}


def test_start_execution_and_send_task_success_refuse_more_than_256_kib(
    local_aws: LocalAWS, poll: Callable[..., Any], task_token: Callable[..., Any]
) -> None:
    sfn = local_aws.client("stepfunctions")
    with pytest.raises(ClientError) as exc:
        _start(local_aws, {"mode": "token", "pad": "x" * SFN_PAYLOAD_CHARS})
    assert _error(exc)[0] == "ValidationException"
    assert (
        "Value at 'input' failed to satisfy constraint: Member must have length less than or equal to 262144"
        in _error(exc)[1]
    )
    arn = _start(local_aws, {"mode": "token", "raise": False})
    token = poll(lambda: task_token(local_aws, arn), what="the task token")
    with pytest.raises(ClientError) as success:
        sfn.send_task_success(taskToken=token, output=json.dumps({"pad": "x" * SFN_PAYLOAD_CHARS}))
    assert "Value at 'output' failed to satisfy constraint" in _error(success)[1]
    sfn.stop_execution(executionArn=arn)


def test_a_lambda_task_result_over_256_kib_fails_with_data_limit_exceeded(local_aws: LocalAWS) -> None:
    # Given an input just under 256 KiB that the echo task returns whole (moto enforces this one)
    arn = _start(local_aws, {"pad": "x" * (SFN_PAYLOAD_CHARS - 200), "env_keys": []})
    description = local_aws.wait_for_execution(arn)
    assert description["status"] == "FAILED"
    assert description["error"] == "States.DataLimitExceeded"
    assert "exceeding the maximum number of bytes service limit" in description["cause"]


# ---------------------------------------------------------------- DynamoDB
def test_dynamodb_refuses_an_item_over_400_kb(local_aws: LocalAWS) -> None:
    ddb = local_aws.client("dynamodb")
    table = local_aws.stack.outputs.get("TableName") or local_aws.stack.physical_id("Table")
    ddb.put_item(TableName=table, Item={"pk": {"S": "limits-ok"}, "blob": {"S": "x" * 380_000}})
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=table, Item={"pk": {"S": "limits-big"}, "blob": {"S": "x" * (400 * 1024 + 1)}})
    assert _error(exc) == ("ValidationException", "Item size has exceeded the maximum allowed size")
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "limits-big"}})
