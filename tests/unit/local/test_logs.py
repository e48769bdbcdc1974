"""Function logs as on AWS: each function's lines, with only its own context, in its own log group."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from modelgate_emulator import LocalAWS, run_function
from modelgate_emulator.logs import log_group_name, read_events


def _events(local: LocalAWS, function: str) -> list[dict[str, Any]]:
    return read_events(local.client("logs"), local.function_name(function))


def _json_lines(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = []
    for event in events:
        try:
            value = json.loads(event["message"])
        except ValueError:
            continue
        if isinstance(value, dict):
            lines.append(value)
    return lines


def _messages(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events]


def test_concurrent_functions_log_only_their_own_context_into_their_own_group(local_aws: LocalAWS) -> None:
    # Given two functions sharing the layer's one Powertools logger, running at the same time
    calls = {"LogsAlphaFunction": "rel-alpha", "LogsBetaFunction": "rel-beta"}
    before = {function: len(_events(local_aws, function)) for function in calls}  # earlier tests' lines

    def call(function: str) -> dict[str, Any]:
        return dict(local_aws.invoke(function, {"meet": True, "release_id": calls[function]}))

    # When both are invoked concurrently (each waits inside its handler for the other)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(calls, pool.map(call, calls), strict=True))

    # Then each group holds only that function's lines, request id, keys and correlation id
    for function, other in (("LogsAlphaFunction", "LogsBetaFunction"), ("LogsBetaFunction", "LogsAlphaFunction")):
        who, other_who = results[function]["who"], results[other]["who"]
        request_id, other_request_id = results[function]["request_id"], results[other]["request_id"]
        events = _events(local_aws, function)[before[function]:]
        messages = _messages(events)
        assert f"START RequestId: {request_id} Version: $LATEST" in messages
        assert f"END RequestId: {request_id}" in messages
        assert any(m.startswith(f"REPORT RequestId: {request_id}\tDuration: ") for m in messages)
        assert f"plain print from {who}" in messages
        assert not any(other_request_id in m or other_who in m for m in messages), messages
        handler_lines = [line for line in _json_lines(events) if "function_request_id" in line]
        assert {line["message"] for line in handler_lines} == {"before meeting", "after meeting", "from a thread"}
        for line in handler_lines:
            assert line["function_name"] == local_aws.function_name(function)
            assert line["function_request_id"] == request_id
            assert line["correlation_id"] == calls[function]
            assert line["who"] == who
            assert line[f"only_{who}"] == who
            assert f"only_{other_who}" not in line
    # and the streams are the functions' own, as the context names them
    alpha_group = local_aws.client("logs").describe_log_streams(
        logGroupName=log_group_name(local_aws.function_name("LogsAlphaFunction"))
    )
    assert all("[$LATEST]" in s["logStreamName"] for s in alpha_group["logStreams"])


def test_a_cold_start_logs_init_and_a_warm_one_keeps_its_stream(local_aws: LocalAWS) -> None:
    # Given a function that logs at module load
    function = "LogsAlphaFunction"
    local_aws.invoke(function, {"release_id": "warm-up"})  # cold here, unless the test above ran first
    before = len(_events(local_aws, function))

    # When it is invoked again (warm)
    result = local_aws.invoke(function, {"release_id": "rel-warm"})

    # Then its lines are START / output / END / REPORT without INIT_START, in the same stream,
    # and Powertools says cold_start false
    events = _events(local_aws, function)
    new = events[before:]
    assert _messages(new)[0] == f"START RequestId: {result['request_id']} Version: $LATEST"
    assert not any(m.startswith("INIT_START") for m in _messages(new))
    assert "Init Duration" not in _messages(new)[-1]
    assert {line["cold_start"] for line in _json_lines(new) if "cold_start" in line} == {False}
    # and the first invocation of the environment logged INIT_START, the module's line and cold_start true
    all_messages = _messages(events)
    init = all_messages.index(next(m for m in all_messages if m.startswith("INIT_START Runtime Version: python3.12")))
    assert json.loads(all_messages[init + 1])["message"] == "module loaded"
    assert all_messages[init + 2].startswith("START RequestId: ")
    first_report = next(m for m in all_messages[init:] if m.startswith("REPORT"))
    assert "\tInit Duration: " in first_report
    first_lines = _json_lines(events[init + 2 : all_messages.index(first_report)])
    assert {line["cold_start"] for line in first_lines if "cold_start" in line} == {True}
    streams = {
        s["logStreamName"]
        for s in local_aws.client("logs").describe_log_streams(
            logGroupName=log_group_name(local_aws.function_name(function))
        )["logStreams"]
    }
    assert len(streams) == 1


def test_an_unhandled_error_is_logged_like_the_python_runtime(local_aws: LocalAWS) -> None:
    # When a handler raises
    before = len(_events(local_aws, "LogsBetaFunction"))
    payload = local_aws.client("lambda").invoke(
        FunctionName=local_aws.function_name("LogsBetaFunction"), Payload=json.dumps({"fail": True}).encode()
    )
    request_id = json.loads(payload["Payload"].read())["requestId"]

    # Then its group has the runtime's error event (with the traceback) before END
    messages = _messages(_events(local_aws, "LogsBetaFunction")[before:])
    error = next(m for m in messages if m.startswith("[ERROR]"))
    assert error.startswith("[ERROR] ValueError: beta was asked to fail\nTraceback (most recent call last):\n")
    assert 'app.py", line' in error
    assert messages.index(error) < messages.index(f"END RequestId: {request_id}")


def test_outside_an_invocation_the_shared_logger_has_no_function_context(local_aws: LocalAWS) -> None:
    # Given invocations that appended the Lambda context and their own keys
    local_aws.invoke("LogsAlphaFunction", {"release_id": "rel-x"})

    # Then the process-level logger (what a new environment starts from) carries none of them
    obs = sys.modules["fixture_shared.obs"]
    keys = obs.logger.get_current_keys()
    assert "function_request_id" not in keys and "correlation_id" not in keys
    assert not any(k.startswith("only_") for k in keys)
    assert keys["service"] == "fixture"


def test_run_function_returns_the_invocation_log_lines(fixture_template: Any, capsys: Any) -> None:
    # When one function runs the way `modelgate invoke` runs it
    outcome = run_function("LogsAlphaFunction", event={"release_id": "rel-cli"}, template_path=fixture_template)

    # Then its log lines come back (and were not echoed to the console as well)
    assert outcome.ok
    assert outcome.log_lines[0].startswith("INIT_START")
    assert f"START RequestId: {outcome.payload['request_id']} Version: $LATEST" in outcome.log_lines
    assert outcome.log_lines[-1].startswith(f"REPORT RequestId: {outcome.payload['request_id']}")
    assert "plain print from alpha" in outcome.log_lines
    assert "plain print from alpha" not in capsys.readouterr().out


def test_the_logs_command_prints_a_functions_recent_lines(
    local_aws: LocalAWS, fixture_template: Any, tmp_path: Any, monkeypatch: Any, capsys: Any
) -> None:
    from modelgate_harness import cli
    from modelgate_harness.control import Control

    # Given a running local stack (as `modelgate local up` describes it in its state file)
    result = local_aws.invoke("LogsBetaFunction", {"release_id": "rel-cli-logs"})
    state = tmp_path / "state.json"
    functions = {spec.logical_id: spec.function_name for spec in local_aws.stack.functions.values()}
    state.write_text(json.dumps({"stacks": {local_aws.stack_name: {"functions": functions}}}))
    control = Control(local_aws.stack_name, local_aws.stack.outputs, local_aws.client, lambda _: None)
    monkeypatch.setattr(cli, "_control", lambda args: control)

    # When `modelgate --local logs LogsBetaFunction` runs
    code = cli.main(["--local", "--local-state", str(state), "logs", "LogsBetaFunction", "-t", str(fixture_template)])

    # Then it prints that function's lines, its invocation included, and nothing of the other function
    out = capsys.readouterr().out
    assert code == 0
    assert f"START RequestId: {result['request_id']} Version: $LATEST" in out
    assert "plain print from beta" in out and "alpha" not in out

    # and a function the state file does not know is one clear line
    state.write_text(json.dumps({"stacks": {local_aws.stack_name: {"functions": {}}}}))
    with pytest.raises(SystemExit, match="state file has no function LogsBetaFunction"):
        cli.main(["--local", "--local-state", str(state), "logs", "LogsBetaFunction", "-t", str(fixture_template)])


def test_a_logger_whose_console_stream_was_closed_logs_to_the_console_as_it_is_now(
    local_aws: LocalAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import logging

    from modelgate_emulator.logs import _PATCHES

    # Given a logger made while stdout was a buffer that has since closed (pytest's capsys closes
    # its buffer after the test in which a layer's logger was first made), and stdout another one now
    first, now = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    _PATCHES.ensure_console()
    logger = logging.getLogger("modelgate-test-closed-console")
    handler = logging.StreamHandler(sys.stdout)
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "propagate", False)
    try:
        first.close()
        monkeypatch.setattr(sys, "stdout", now)
        _PATCHES.ensure_console()
        # When it logs, outside an invocation and then inside one (echoed to the console)
        logger.warning("outside an invocation")
        result = local_aws.invoke("LogsAlphaFunction", {"release_id": "rel-closed-console"})
        # Then nothing failed, and the line went to the console as it is now (on Lambda stdout never closes)
        assert result["who"] == "alpha"
        assert "outside an invocation" in now.getvalue()
    finally:
        logger.removeHandler(handler)
