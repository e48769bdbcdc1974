"""The in-process Lambda runtime (modelgate_emulator.lambda_runtime) and its moto patches.

Each test of a moto workaround fails without it: moto 5.2.1 echoes the payload, ignores
Qualifier and alias weights, and sends no ExecutedVersion.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from modelgate_emulator import LambdaInvokeError, LocalAWS, environ, handler_time
from modelgate_emulator.lambda_runtime import LambdaContext, LambdaRuntime, WeightedRouter, _run_with_timeout
from modelgate_emulator.runtime import FAKE_CREDENTIALS, MOTO_CONFIG
from modelgate_emulator.template import deploy
from moto import mock_aws


def raw_invoke(local: LocalAWS, function: str, event: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    response = local.client("lambda").invoke(
        FunctionName=local.stack.function_name(function), Payload=json.dumps(event).encode(), **kwargs
    )
    body = response["Payload"].read()
    return response, json.loads(body) if body else None


@pytest.fixture(scope="module")
def two_versions(local_aws: LocalAWS) -> LocalAWS:
    """ServiceFunction: version 1 (MODEL_CONFIG=v1, behind `live`) and version 2 (v2)."""
    lam = local_aws.client("lambda")
    name = local_aws.stack.function_name("ServiceFunction")
    config = lam.get_function_configuration(FunctionName=name)
    variables = {**config["Environment"]["Variables"], "MODEL_CONFIG": "v2"}
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    return local_aws


# ------------------------------------------------------------------ handler, context, env
def test_invoke_runs_the_real_handler_with_the_template_environment_and_a_context(local_aws: LocalAWS) -> None:
    # Given the fixture stack
    name = local_aws.stack.function_name("EchoFunction")
    # When Echo is invoked
    result = local_aws.invoke("EchoFunction", {"a": 1})
    # Then its handler ran (not moto's echo) with the template's environment and a context
    assert result["module"] == "echo"
    assert result["event"] == {"a": 1}
    assert result["env"] == {
        "WHO": "echo",
        "TABLE_NAME": local_aws.stack.physical_id("Table"),
        "STAGE": "dev",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    }
    context = result["context"]
    assert context["function_name"] == name
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"].endswith(f":function:{name}")
    assert context["memory_limit_in_mb"] == 256
    assert context["log_group_name"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in context["log_stream_name"]
    assert 0 < context["remaining_ms"] <= 5000
    # And the layer's package was importable, as /opt/python is on Lambda
    assert result["layer"] == "from-layer"


def test_each_function_imports_its_own_app_and_sibling_modules(local_aws: LocalAWS) -> None:
    # Given two functions whose code is app.py + helpers.py each
    # When both are invoked
    echo = local_aws.invoke("EchoFunction", {})
    other = local_aws.invoke("OtherFunction", {})
    # Then each ran its own module and its own sibling
    assert (echo["module"], echo["helpers"]) == ("echo", "echo-helpers")
    assert (other["module"], other["helpers"]) == ("other", "other-helpers")


def test_environments_stay_apart_between_concurrent_invocations(local_aws: LocalAWS) -> None:
    # Given a variable in the test process that no function declares
    os.environ["LEAK_CHECK"] = "from-the-test-process"
    try:
        # When Echo (WHO=echo) and Other (WHO=other) run at the same time, many times
        def call(function: str) -> tuple[str, Any]:
            return function, local_aws.invoke(function, {"sleep": 0.05, "set_env": "x"})

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(call, ["EchoFunction", "OtherFunction"] * 8))
    finally:
        del os.environ["LEAK_CHECK"]
    # Then every invocation saw its own function's environment, also in threads it started
    for function, result in results:
        if function == "EchoFunction":
            assert result["env"]["WHO"] == "echo"
            assert result["env_from_thread"] == "echo"
            assert result["leaked"] is None  # the sandbox hides the host's variables
        else:
            assert result["who"] == "other"
    # And nothing a handler wrote reached the process environment
    assert "SET_BY_HANDLER" not in os.environ
    assert "WHO" not in os.environ


def test_module_code_runs_at_cold_start_with_the_function_environment(local_aws: LocalAWS) -> None:
    result = local_aws.invoke("EchoFunction", {})
    assert result["cold_start_who"] == "echo"


def test_first_invocation_is_a_cold_start_and_later_ones_are_warm(local_aws: LocalAWS) -> None:
    # Given a function nobody invoked yet in this module
    # When it is invoked twice
    local_aws.invoke("TokenFunction", {})
    local_aws.invoke("TokenFunction", {})
    # Then the log says cold, then warm
    records = local_aws.invocations("TokenFunction")
    assert [r.cold_start for r in records[-2:]] == [True, False]


# ------------------------------------------------------------------ versions and aliases
def test_qualifier_selects_the_version_and_its_own_environment(two_versions: LocalAWS) -> None:
    # Given version 1 (v1) and version 2 (v2) of ServiceFunction
    # When each is invoked by Qualifier, and unqualified
    first, first_body = raw_invoke(two_versions, "ServiceFunction", {}, Qualifier="1")
    second, second_body = raw_invoke(two_versions, "ServiceFunction", {}, Qualifier="2")
    latest, latest_body = raw_invoke(two_versions, "ServiceFunction", {})
    # Then the version asked for ran, with the environment it was published with
    assert first_body == {"version": "1", "config": "v1"}
    assert second_body == {"version": "2", "config": "v2"}
    assert latest_body == {"version": "$LATEST", "config": "v2"}
    # And the response says which version executed
    assert (first["ExecutedVersion"], second["ExecutedVersion"], latest["ExecutedVersion"]) == ("1", "2", "$LATEST")


def test_qualifier_in_the_function_arn_works_too(two_versions: LocalAWS) -> None:
    arn = two_versions.stack.function("ServiceFunction").arn
    response = two_versions.client("lambda").invoke(FunctionName=f"{arn}:2", Payload=b"{}")
    assert response["ExecutedVersion"] == "2"


def test_alias_weights_route_each_request_at_random_by_weight(two_versions: LocalAWS) -> None:
    # Given the live alias on version 1 with 10 % on version 2
    lam = two_versions.client("lambda")
    name = two_versions.stack.function_name("ServiceFunction")
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    try:
        # When the alias is invoked 1000 times
        executed = [lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")["ExecutedVersion"] for _ in range(1000)]
    finally:
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {}})
    # Then about 10 % went to the canary (binomial: mean 100, sd 9.5; 4 sd either side)
    canary = executed.count("2")
    assert 62 <= canary <= 138, canary
    assert executed.count("1") == 1000 - canary
    # and not as a round robin: the gaps between canary requests vary (a round robin
    # sends every 10th request)
    at = [i for i, version in enumerate(executed) if version == "2"]
    gaps = {b - a for a, b in itertools.pairwise(at)}
    assert len(gaps) > 5, sorted(gaps)


def test_alias_without_weights_runs_its_version(two_versions: LocalAWS) -> None:
    response, body = raw_invoke(two_versions, "ServiceFunction", {}, Qualifier="live")
    assert response["ExecutedVersion"] == "1"
    assert body["version"] == "1"


def test_unknown_function_and_alias_are_resource_not_found(local_aws: LocalAWS) -> None:
    lam = local_aws.client("lambda")
    with pytest.raises(ClientError) as unknown_function:
        lam.invoke(FunctionName="no-such-function", Payload=b"{}")
    with pytest.raises(ClientError) as unknown_alias:
        lam.invoke(FunctionName=local_aws.stack.function_name("EchoFunction"), Qualifier="nope", Payload=b"{}")
    assert unknown_function.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert unknown_alias.value.response["Error"]["Code"] == "ResourceNotFoundException"


# ------------------------------------------------------------------ errors
def test_an_exception_is_reported_like_the_python_runtime(local_aws: LocalAWS) -> None:
    # When a handler raises a named domain error
    response, body = raw_invoke(local_aws, "FailFunction", {"kind": "gate", "accuracy": 0.5})
    # Then Invoke reports an Unhandled function error with the runtime's payload
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert set(body) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert body["errorType"] == "GateFailed"
    assert body["errorMessage"] == "accuracy 0.5 below 0.9"
    assert body["requestId"] == local_aws.invocations("FailFunction")[-1].request_id
    # And the stack trace is the handler's, without the local runtime's frames
    assert any("in _judge" in line for line in body["stackTrace"])
    assert not any("lambda_runtime.py" in line for line in body["stackTrace"])


def test_local_invoke_raises_lambda_invoke_error_with_the_error_type(local_aws: LocalAWS) -> None:
    with pytest.raises(LambdaInvokeError) as raised:
        local_aws.invoke("FailFunction", {"kind": "gate"})
    assert raised.value.error_type == "GateFailed"
    assert "below 0.9" in raised.value.error_message


def test_a_result_that_is_not_json_is_a_marshal_error(local_aws: LocalAWS) -> None:
    with pytest.raises(LambdaInvokeError) as raised:
        local_aws.invoke("FailFunction", {"kind": "unserialisable"})
    assert raised.value.error_type == "Runtime.MarshalError"


def test_a_handler_that_sleeps_past_its_timeout_times_out(local_aws: LocalAWS) -> None:
    # Given FailFunction's Timeout of 1 s and a handler that sleeps 5 s (a sleep is handler time)
    before = len(local_aws.invocations("FailFunction"))
    started = time.monotonic()
    with pytest.raises(LambdaInvokeError) as raised:
        local_aws.invoke("FailFunction", {"kind": "timeout"})
    elapsed = time.monotonic() - started
    # Then the invocation ends with the sandbox's timeout error, not before its Timeout passed,
    # and its Duration is the Timeout, as Lambda reports a timed-out invocation
    assert raised.value.error_type == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in raised.value.error_message
    assert elapsed >= 1.0
    record = local_aws.invocations("FailFunction")[before]
    assert record.error_type == "Sandbox.Timedout" and record.duration_ms == 1000.0


def test_duration_is_the_handler_time_including_its_sleep(local_aws: LocalAWS) -> None:
    # Given OtherFunction, whose handler sleeps as long as the event says
    before = len(local_aws.invocations("OtherFunction"))
    started = time.monotonic()
    local_aws.invoke("OtherFunction", {"sleep": 0.2})
    elapsed = time.monotonic() - started
    # Then its Duration counts the sleep (deliberate waiting is handler time) and never more
    # than the real time the call took
    record = local_aws.invocations("OtherFunction")[before]
    assert 200.0 <= record.duration_ms <= elapsed * 1000.0


# ------------------------------------------------------------------ invocation types
def test_event_invocation_returns_202_and_runs_in_the_background(local_aws: LocalAWS, poll: Any) -> None:
    before = len(local_aws.invocations("OtherFunction"))
    response, _ = raw_invoke(local_aws, "OtherFunction", {"sleep": 0.05}, InvocationType="Event")
    assert response["StatusCode"] == 202
    records = poll(lambda: local_aws.invocations("OtherFunction")[before:], what="the async invocation")
    assert records[0].invocation_type == "Event"
    assert records[0].error_type is None


def test_a_failed_event_invocation_is_retried_twice_then_lands_in_the_dead_letter_queue(
    local_aws: LocalAWS, poll: Any
) -> None:
    # Given FailFunction, whose DeadLetterQueue in the fixture template is the DeadLetters queue
    sqs = local_aws.client("sqs")
    queue_url = local_aws.stack.physical_id("DeadLetters")
    before = len(local_aws.invocations("FailFunction"))
    payload = {"kind": "gate", "accuracy": 0.25, "marker": str(uuid.uuid4())}
    # When it is invoked asynchronously and its handler fails every time
    response, _ = raw_invoke(local_aws, "FailFunction", payload, InvocationType="Event")
    assert response["StatusCode"] == 202
    # Then Lambda tries three times in all (AWS: two retries), under one request id
    attempts = poll(
        lambda: (r := local_aws.invocations("FailFunction")[before:]) and len(r) >= 3 and r, what="three attempts"
    )
    assert len(attempts) == 3
    assert {r.request_id for r in attempts} == {attempts[0].request_id}
    assert all(r.invocation_type == "Event" and r.error_type == "GateFailed" for r in attempts)
    # And the queue gets the original payload, with why in the message attributes
    messages = poll(
        lambda: sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"]).get("Messages"),
        what="the dead letter",
    )
    assert json.loads(messages[0]["Body"]) == payload
    attributes = {k: v["StringValue"] for k, v in messages[0]["MessageAttributes"].items()}
    assert attributes == {
        "RequestID": attempts[0].request_id,
        "ErrorCode": "200",
        "ErrorMessage": "accuracy 0.25 below 0.9",
    }
    assert messages[0]["MessageAttributes"]["ErrorCode"]["DataType"] == "Number"
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
    # And a later failure of a synchronous call goes nowhere near the queue
    with pytest.raises(LambdaInvokeError):
        local_aws.invoke("FailFunction", {"kind": "gate"})
    assert not sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages")


def test_an_event_invocation_that_succeeds_on_a_retry_sends_no_dead_letter(
    local_aws: LocalAWS, poll: Any, tmp_path: Path
) -> None:
    # Given a function that fails its first attempt only (a marker file says it ran once)
    marker = str(tmp_path / "ran-once")
    sqs = local_aws.client("sqs")
    queue_url = local_aws.stack.physical_id("DeadLetters")
    before = len(local_aws.invocations("FailFunction"))
    # When it is invoked asynchronously
    raw_invoke(local_aws, "FailFunction", {"kind": "flaky_once", "marker": marker}, InvocationType="Event")
    # Then the retry succeeds and nothing is dead-lettered
    attempts = poll(
        lambda: (r := local_aws.invocations("FailFunction")[before:]) and len(r) >= 2 and r, what="the retry"
    )
    assert [r.error_type for r in attempts] == ["Flaky", None]
    assert local_aws.runtime is not None and local_aws.runtime.wait_for_async(timeout=5.0)
    assert not sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages")


def test_a_dead_letter_target_must_be_an_sqs_queue() -> None:
    runtime = LambdaRuntime()
    with pytest.raises(ValueError, match="is not an SQS queue ARN"):
        runtime.set_dead_letter_target(
            account_id="123456789012",
            region="us-east-1",
            function_name="f",
            target_arn="arn:aws:sns:us-east-1:123456789012:t",
        )
    with pytest.raises(ValueError, match="async_retry_delays must be >= 0"):
        LambdaRuntime(async_retry_delays=(-1.0,))


def test_dry_run_checks_without_running(local_aws: LocalAWS) -> None:
    before = len(local_aws.invocations("OtherFunction"))
    response, _ = raw_invoke(local_aws, "OtherFunction", {}, InvocationType="DryRun")
    assert response["StatusCode"] == 204
    assert len(local_aws.invocations("OtherFunction")) == before


# ------------------------------------------------------------------ metrics sink, layers
class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, **kwargs: Any) -> None:
        with self.lock:
            self.calls.append(kwargs)


@pytest.fixture
def bare_runtime(monkeypatch: pytest.MonkeyPatch, fixture_template: Any) -> Iterator[tuple[LambdaRuntime, RecordingSink, Any]]:
    """The runtime alone on moto (no LocalAWS), with a recording metrics sink."""
    for key, value in {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    sink = RecordingSink()
    with mock_aws(config=MOTO_CONFIG):
        runtime = LambdaRuntime(metrics_sink=sink)
        runtime.install()
        try:
            clients: dict[str, Any] = {}
            stack = deploy(
                fixture_template,
                client=lambda s: clients.setdefault(s, boto3.client(s, region_name="us-east-1")),
                stack_name=f"bare-{uuid.uuid4().hex[:8]}",  # a module-scoped LocalAWS may share moto
                region="us-east-1",
                account_id="123456789012",
                runtime=runtime,
            )
            yield runtime, sink, stack
        finally:
            runtime.uninstall()


def test_every_invocation_reaches_the_metrics_sink(bare_runtime: tuple[LambdaRuntime, RecordingSink, Any]) -> None:
    runtime, sink, stack = bare_runtime
    lam = boto3.client("lambda", region_name="us-east-1")
    name = stack.function_name("ServiceFunction")
    # When the function is invoked through its alias, by version, unqualified, and fails
    lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
    lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
    lam.invoke(FunctionName=name, Payload=b"{}")
    lam.invoke(FunctionName=stack.function_name("FailFunction"), Payload=b'{"kind": "gate"}')
    # and through the alias once it is weighted (all of it on the additional version 2)
    variables = {**lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"], "MODEL_CONFIG": "v2"}
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {"2": 1.0}})
    lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
    # Then the sink saw each with its resource, executed version, error flag, and whether
    # a weighted alias routed it (the only calls AWS documents ExecutedVersion for)
    seen = [(c["function_name"], c["resource"], c["executed_version"], c["error"], c["weighted_alias"]) for c in sink.calls]
    assert seen == [
        (name, f"{name}:live", "1", False, False),
        (name, f"{name}:1", "1", False, False),
        (name, None, "$LATEST", False, False),
        (stack.function_name("FailFunction"), None, "$LATEST", True, False),
        (name, f"{name}:live", "2", False, True),
    ]
    assert all(c["duration_ms"] >= 0 and c["account_id"] == "123456789012" and c["region"] == "us-east-1" for c in sink.calls)


def test_functions_with_layers_can_be_created_on_the_docker_free_backend(
    bare_runtime: tuple[LambdaRuntime, RecordingSink, Any],
) -> None:
    # moto looks layers up in the Docker backend; the patch uses the backend in use
    _, _, stack = bare_runtime
    config = boto3.client("lambda", region_name="us-east-1").get_function_configuration(
        FunctionName=stack.function_name("EchoFunction")
    )
    layers = [r.physical_id for r in stack.resources.values() if r.type == "AWS::Lambda::LayerVersion"]
    assert [layer["Arn"] for layer in config["Layers"]] == layers


# ------------------------------------------------------------------ pure parts
def test_weighted_router_is_random_by_weight_and_repeats_with_a_seed() -> None:
    # Given two routers with the same seed, and one with another seed
    first, again, other = WeightedRouter(seed=7), WeightedRouter(seed=7), WeightedRouter(seed=8)
    picks = [first.pick("alias-a", "1", {"2": 0.25}) for _ in range(4000)]
    # Then the share follows the weight (binomial: mean 1000, sd 27; 4 sd either side)
    assert 890 <= picks.count("2") <= 1110, picks.count("2")
    # and the same seed repeats the same sequence per alias, whatever other aliases do
    again.pick("alias-b", "1", {"2": 0.5})
    assert [again.pick("alias-a", "1", {"2": 0.25}) for _ in range(4000)] == picks
    assert [other.pick("alias-a", "1", {"2": 0.25}) for _ in range(4000)] != picks
    # and two additional versions split the draw by their weights
    three = Counter(first.pick("alias-c", "1", {"2": 0.2, "3": 0.3}) for _ in range(4000))
    assert 710 <= three["2"] <= 890 and 1090 <= three["3"] <= 1310, three
    # and an unweighted alias or a zero weight always runs the primary version
    assert first.pick("alias", "1", {}) == "1"
    assert {first.pick("alias-d", "1", {"2": 0.0}) for _ in range(200)} == {"1"}
    assert {first.pick("alias-e", "1", {"2": 1.0}) for _ in range(200)} == {"2"}


def test_weighted_router_rejects_weights_aws_rejects() -> None:
    router = WeightedRouter(seed=1)
    with pytest.raises(ValueError, match="exceed 1.0"):
        router.pick("alias", "1", {"2": 0.7, "3": 0.6})
    with pytest.raises(ValueError, match="outside"):
        router.pick("alias", "1", {"2": -0.1})


def test_environ_overlay_is_per_context_and_inherited_by_threads() -> None:
    was_installed = environ.is_installed()
    environ.install()
    try:
        os.environ["BASE_ONLY"] = "base"
        seen: dict[str, Any] = {}
        with environ.overlay({"WHO": "a"}):
            assert os.environ["WHO"] == "a"
            assert os.getenv("BASE_ONLY") is None  # hidden: not a pass-through key
            assert os.environ.get("AWS_DEFAULT_REGION") == os.environ.get("AWS_DEFAULT_REGION")
            os.environ["WRITTEN"] = "inside"
            thread = threading.Thread(target=lambda: seen.update(who=os.environ.get("WHO"), written=os.environ.get("WRITTEN")))
            thread.start()
            thread.join()
            with environ.overlay({"WHO": "b"}):
                assert os.environ["WHO"] == "b"
            assert os.environ["WHO"] == "a"
            del os.environ["WHO"]
            assert "WHO" not in os.environ
        assert seen == {"who": "a", "written": "inside"}
        assert "WRITTEN" not in os.environ
        assert os.environ["BASE_ONLY"] == "base"
    finally:
        os.environ.pop("BASE_ONLY", None)
        environ.uninstall()
    assert environ.is_installed() == was_installed


# ------------------------------------------------------------------ the timeout counts handler time
@pytest.fixture
def counting() -> Iterator[None]:
    """What ``LambdaRuntime.install`` sets up for ``_run_with_timeout``: the environment overlay
    and handler-time counting (``time.sleep``, threads a handler starts)."""
    environ.install()
    handler_time.install()
    try:
        yield
    finally:
        handler_time.uninstall()
        environ.uninstall()


def _context(timeout: float) -> LambdaContext:
    return LambdaContext(
        function_name="f", function_version="$LATEST", invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        memory_limit_in_mb=128, aws_request_id=str(uuid.uuid4()), log_group_name="/aws/lambda/f", log_stream_name="s",
        deadline=time.monotonic() + timeout,
    )


def _run(handler: Any, timeout: float, **kwargs: Any) -> Any:
    return _run_with_timeout(handler, {}, _context(timeout), {}, timeout, "lambda:f:test", **kwargs)


def test_a_cpu_bound_handler_past_its_timeout_times_out(counting: None) -> None:
    # Given a handler that computes until told to stop, and a Timeout of 0.3 s
    stop = threading.Event()

    def spin(event: Any, context: Any) -> None:
        while not stop.is_set():
            sum(range(1000))

    try:
        outcome = _run(spin, 0.3)
    finally:
        stop.set()
    # Then its CPU time reaches the Timeout: it times out, and its duration is the Timeout
    assert outcome.timed_out and not outcome.hung
    assert outcome.handler_seconds == 0.3


def test_time_lost_to_threads_holding_the_gil_is_not_handler_time(counting: None) -> None:
    # Given four threads that spin (holding the GIL in turns with the handler) until the
    # handler has been running for twice its Timeout in real time
    timeout = 0.5
    stop, spun_past_timeout = threading.Event(), threading.Event()
    started = time.monotonic()

    def spinner() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            if count % 10_000 == 0 and time.monotonic() - started > 2 * timeout:
                spun_past_timeout.set()

    spinners = [threading.Thread(target=spinner, daemon=True) for _ in range(4)]
    for thread in spinners:
        thread.start()

    # and a handler whose own work is a fixed count of small units (milliseconds of CPU),
    # done while the spinners compete for the GIL, that then waits for the spinners
    def handler(event: Any, context: Any) -> dict[str, Any]:
        total = sum(sum(range(2_000)) for _ in range(50))
        spun_past_timeout.wait()
        return {"total": total, "remaining_ms": context.get_remaining_time_in_millis()}

    try:
        outcome = _run(handler, timeout)
        real = time.monotonic() - started
    finally:
        stop.set()
        for thread in spinners:
            thread.join()
    # Then it ran longer than its Timeout in real time, yet it did not time out: only its own
    # work counts, and the context's remaining time says the same
    assert real > timeout
    assert not outcome.timed_out and outcome.error is None
    assert outcome.value["total"] == 50 * sum(range(2_000))
    assert 0.0 < outcome.handler_seconds < timeout
    assert 0 < outcome.value["remaining_ms"] <= timeout * 1000


def test_a_sleep_in_a_thread_the_handler_starts_is_handler_time(counting: None) -> None:
    # Given a handler that sleeps 5 s in a worker of its own pool, and a Timeout of 0.3 s
    def handler(event: Any, context: Any) -> None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(time.sleep, 5).result()

    outcome = _run(handler, 0.3)
    # Then the worker's sleep counts for the invocation: it times out (its own thread only waited)
    assert outcome.timed_out and not outcome.hung


def test_waiting_for_a_synchronous_invocation_is_the_caller_s_handler_time(counting: None) -> None:
    # Given a handler (Timeout 0.3 s) that invokes another function synchronously, whose
    # handler sleeps 1 s within its own Timeout of 3 s
    inner: list[Any] = []

    def callee(event: Any, context: Any) -> str:
        time.sleep(1)
        return "done"

    def caller(event: Any, context: Any) -> None:
        inner.append(_run(callee, 3.0))

    outcome = _run(caller, 0.3)
    # Then the caller's wait counts as the callee's handler time: the caller times out
    assert outcome.timed_out and not outcome.hung


def test_a_handler_blocked_for_ever_ends_at_the_hang_guard(counting: None) -> None:
    # Given a handler blocked on an event nobody sets (no CPU, no deliberate wait: no handler
    # time), a Timeout of 1 s and a hang guard of 0.2 real seconds
    release = threading.Event()

    def handler(event: Any, context: Any) -> None:
        release.wait()

    try:
        outcome = _run(handler, 1.0, hang_guard=0.2)
    finally:
        release.set()
    # Then the guard ends it as a timeout (AWS always ends an invocation), with its Timeout as duration
    assert outcome.timed_out and outcome.hung
    assert outcome.handler_seconds == 1.0


def test_the_default_hang_guard_is_generous() -> None:
    assert handler_time.hang_guard_seconds(1) == 120.0
    assert handler_time.hang_guard_seconds(30) == 600.0


@pytest.mark.parametrize(("timeout", "guard", "problem"), [(0, None, "timeout"), (-1, None, "timeout"), (1, 0, "hang guard")])
def test_a_timeout_or_hang_guard_that_is_not_positive_is_refused(counting: None, timeout: float, guard: float | None,
                                                                  problem: str) -> None:
    with pytest.raises(ValueError, match=f"the {'function timeout' if problem == 'timeout' else problem} must be > 0"):
        _run(lambda event, context: None, timeout, hang_guard=guard)


def test_a_sleep_counts_only_as_long_as_asked_even_when_it_wakes_late(counting: None,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a machine so busy that a 0.05 s sleep wakes up 0.3 s late
    real_sleep = handler_time._original_sleep
    monkeypatch.setattr(handler_time, "_original_sleep", lambda seconds: real_sleep(seconds + 0.3))
    meter = handler_time.Meter()
    # When a thread counting for an invocation sleeps 0.05 s
    with meter.counting():
        time.sleep(0.05)
    # Then the sleep counts 0.05 s, not the late wake-up
    assert 0.05 <= meter.close() < 0.3


def test_without_per_thread_cpu_clocks_handler_time_is_real_time(counting: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a platform without per-thread CPU clocks, and a handler blocked on an event
    monkeypatch.setattr(handler_time, "_HAS_THREAD_CLOCKS", False)
    release = threading.Event()
    try:
        outcome = _run(lambda event, context: release.wait(), 0.2, hang_guard=100)
    finally:
        release.set()
    # Then its real time counts: it times out at its Timeout, not at the hang guard
    assert outcome.timed_out and not outcome.hung


# ------------------------------------------------------------------ sys.path, shared by every thread
class _ListNoOneMayChange(list):
    """sys.path as another thread sees it while it searches it for a module: any change in place
    (an entry removed from the front shifts the rest, so the search skips one) fails the test."""

    def _changed(self, *_: Any, **__: Any) -> None:
        raise AssertionError("sys.path was changed in place while another thread may be iterating it")

    insert = remove = append = extend = pop = clear = __setitem__ = __delitem__ = __iadd__ = _changed


def test_loading_a_handler_never_changes_the_sys_path_list_other_threads_iterate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelgate_emulator.lambda_runtime import _load_handler

    # Given a function whose handler imports a sibling module, and sys.path as a list no one may change
    (tmp_path / "app.py").write_text("import sys\nFIRST = sys.path[0]\nfrom helpers import WHO\n"
                                     "def handler(event, context):\n    return WHO\n")
    (tmp_path / "helpers.py").write_text("WHO = 'sibling'\n")
    held = _ListNoOneMayChange(sys.path)
    before = list(held)
    monkeypatch.setattr(sys, "path", held)
    # When its handler is loaded
    module, handler = _load_handler(tmp_path, "app.handler", "_modelgate_lambda_test_syspath")
    monkeypatch.delitem(sys.modules, "_modelgate_lambda_test_syspath", raising=False)
    # Then the code dir was first on sys.path while the module ran, and its sibling resolved there
    assert module.FIRST == str(tmp_path) and handler({}, None) == "sibling"
    # And the list another thread held is unchanged, while sys.path no longer names the code dir
    assert list(held) == before
    assert sys.path == before
    assert "helpers" not in sys.modules or not str(getattr(sys.modules["helpers"], "__file__", "")).startswith(
        str(tmp_path))
