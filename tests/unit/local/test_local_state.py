"""The state file several `modelgate local up` share (one per stack), and how the CLI's --stack
chooses among its stacks (no server runs here: the file is what they exchange)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from modelgate_harness import cli
from modelgate_harness.server import (
    LocalStateError,
    add_stack,
    claim_stack,
    control_from_state,
    local_stack_state,
    release_stack,
)


def entry(name: str, pid: int | None = None) -> dict:
    return {"endpoint_url": f"http://127.0.0.1/{name}", "region": "us-east-1", "stack_name": name,
            "outputs": {"ArtifactBucketName": f"{name}-bucket"}, "functions": {"IntakeFunction": f"{name}-intake"},
            "principals": {"operator": {"aws_access_key_id": "AKID", "aws_secret_access_key": "s",
                                        "aws_session_token": "t", "arn": "arn"}},
            "pid": os.getpid() if pid is None else pid}


def dead_pid() -> int:
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                             check=True)
    return int(process.stdout)


def test_two_stacks_share_one_state_file_and_each_removes_only_its_own_entry(tmp_path):
    state = tmp_path / "local.json"
    add_stack(state, "modelgate-staging", entry("modelgate-staging"))
    add_stack(state, "modelgate-prod", entry("modelgate-prod"))
    assert sorted(json.loads(state.read_text())["stacks"]) == ["modelgate-prod", "modelgate-staging"]
    assert state.stat().st_mode & 0o777 == 0o600  # the principals' keys: the owner's alone
    assert [p.name for p in tmp_path.iterdir()] == ["local.json"]  # no temporary or lock file left beside it
    release_stack(state, "modelgate-staging")
    assert list(json.loads(state.read_text())["stacks"]) == ["modelgate-prod"]
    release_stack(state, "modelgate-prod")
    assert not state.exists()  # the last one takes the file with it


def test_the_stack_is_chosen_by_name_or_is_the_only_one(tmp_path):
    state = tmp_path / "local.json"
    add_stack(state, "modelgate-staging", entry("modelgate-staging"))
    assert local_stack_state(state)["stack_name"] == "modelgate-staging"  # the only one: no --stack needed
    add_stack(state, "modelgate-prod", entry("modelgate-prod"))
    assert local_stack_state(state, "modelgate-prod")["stack_name"] == "modelgate-prod"
    with pytest.raises(LocalStateError, match=r"names 2 running stacks \(modelgate-prod, modelgate-staging\): "
                                              r"choose one with --stack"):
        local_stack_state(state)
    with pytest.raises(LocalStateError, match=r"stack modelgate-dev is not running locally .* names modelgate-prod, "
                                              r"modelgate-staging\): start it with `modelgate local up --stack "
                                              r"modelgate-dev`"):
        local_stack_state(state, "modelgate-dev")


def test_a_control_for_each_stack_of_the_file(tmp_path):
    state = tmp_path / "local.json"
    add_stack(state, "modelgate-staging", entry("modelgate-staging"))
    add_stack(state, "modelgate-prod", entry("modelgate-prod"))
    prod = control_from_state(state, "modelgate-prod")
    assert (prod.stack_name, prod.bucket) == ("modelgate-prod", "modelgate-prod-bucket")


def test_a_stack_served_by_a_running_process_is_not_served_twice(tmp_path):
    state = tmp_path / "local.json"
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        add_stack(state, "modelgate-staging", entry("modelgate-staging", pid=other.pid))
        with pytest.raises(LocalStateError, match=rf"stack modelgate-staging is already served at "
                                                  rf"http://127.0.0.1/modelgate-staging \(process {other.pid}"):
            claim_stack(state, "modelgate-staging")
        with pytest.raises(LocalStateError, match="already served"):
            add_stack(state, "modelgate-staging", entry("modelgate-staging"))
        claim_stack(state, "modelgate-prod")  # another stack may start beside it
    finally:
        other.communicate()


def test_an_entry_left_by_a_server_that_died_is_replaced(tmp_path):
    state = tmp_path / "local.json"
    add_stack(state, "modelgate-staging", entry("modelgate-staging", pid=dead_pid()))
    add_stack(state, "modelgate-prod", entry("modelgate-prod", pid=dead_pid()))
    claim_stack(state, "modelgate-staging")
    add_stack(state, "modelgate-staging", entry("modelgate-staging"))
    # both dead entries are gone: the CLI needs no --stack for the one stack running
    assert list(json.loads(state.read_text())["stacks"]) == ["modelgate-staging"]


@pytest.mark.parametrize("content", ['{"endpoint_url": "http://127.0.0.1:4566"}', "not json", '{"stacks": []}'])
def test_a_state_file_of_another_shape_is_one_clear_line(tmp_path, capsys, content):
    state = tmp_path / "local.json"
    state.write_text(content)
    assert cli.main(["--local", "--local-state", str(state), "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"modelgate: LocalStateError: {state}") and err.count("\n") == 1, err


def test_without_a_running_stack_the_cli_says_how_to_start_one(tmp_path, capsys):
    assert cli.main(["--local", "--local-state", str(tmp_path / "none.json"), "--stack", "modelgate-prod",
                     "status"]) == 2
    assert "no local runtime is running" in capsys.readouterr().err


def test_local_up_takes_its_stack_and_template_parameters():
    args = cli.build_parser().parse_args(["local", "up", "--stack", "modelgate-prod", "--parameter", "Stage=prod",
                                          "--parameter", "RequiresStage=staging", "--port", "4567"])
    assert args.up_stack == "modelgate-prod" and dict(args.parameter) == {"Stage": "prod", "RequiresStage": "staging"}
    # the global --stack names it too (as for every other command); neither: the local default
    assert cli.build_parser().parse_args(["--stack", "modelgate-staging", "local", "up"]).stack == "modelgate-staging"


@pytest.mark.parametrize("bad", ["Stage", "=prod", "Stage Name=prod"])
def test_a_template_parameter_that_is_not_key_value_is_refused_naming_it(bad, capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["local", "up", "--parameter", bad])
    assert f"{bad!r} is not KEY=VALUE" in capsys.readouterr().err


def test_the_stack_default_is_the_environments_else_none_locally(monkeypatch):
    monkeypatch.delenv("MODELGATE_STACK", raising=False)
    assert cli.build_parser().parse_args(["status"]).stack is None  # AWS: 'modelgate'; locally: the only stack
    monkeypatch.setenv("MODELGATE_STACK", "modelgate-prod")
    assert cli.build_parser().parse_args(["status"]).stack == "modelgate-prod"


def test_a_parameter_the_template_does_not_declare_is_refused_before_anything_runs(tmp_path, capsys):
    from pathlib import Path

    template = Path(cli.__file__).resolve().parents[2] / "template.yaml"
    assert cli.main(["local", "up", "-t", str(template), "--state-file", str(tmp_path / "local.json"),
                     "--parameter", "Stage=prod", "--parameter", "RequireStage=staging"]) == 2
    err = capsys.readouterr().err
    assert "TemplateParameterUnknown: Parameters: ['RequireStage'] do not exist in" in err and "RequiresStage" in err
    assert not (tmp_path / "local.json").exists()


# A process whose SIGTERM is delivered to a thread other than the main one (the kernel may pick any
# thread of the process): the main thread, waiting for the stop, must still see it.
_SIGNAL_TO_ANOTHER_THREAD = """
import signal, sys, threading, time
from modelgate_harness.server import stop_on_signals, wait_for_stop

stop = threading.Event()
signalled = stop_on_signals()
waiting = threading.Event()

def deliver_here():
    waiting.wait()
    time.sleep(0.5)  # the main thread blocked in its wait (whether it is yet or not, it must see the signal)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # to this thread, not the main one
    time.sleep(3600)

threading.Thread(target=deliver_here, daemon=True).start()
waiting.set()
wait_for_stop(stop, signalled)
print("stopped by", signalled)
"""


def test_the_server_stops_on_sigterm_delivered_to_another_thread() -> None:
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root / "local")])}
    # When SIGTERM reaches the waiting process through another of its threads
    try:  # a hang guard, no speed limit: before the fix the process waited for ever
        done = subprocess.run([sys.executable, "-c", _SIGNAL_TO_ANOTHER_THREAD], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("the SIGTERM delivered to another thread never stopped the wait")
    # Then the wait ended, on that signal
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"stopped by [{int(signal.SIGTERM)}]"
