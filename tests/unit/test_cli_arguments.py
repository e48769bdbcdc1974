"""The CLI's argument parsing and its one-line errors (no AWS, no local runtime)."""

from __future__ import annotations

import pytest
from modelgate_harness import cli


def test_local_is_a_flag_so_the_readme_commands_parse():
    # Given the README's `modelgate --local submit DIR --commit SHA`
    args = cli.build_parser().parse_args(["--local", "submit", "examples/support-bot/v1", "--commit", "0123abc"])
    # Then --local did not swallow the subcommand
    assert args.local is True and args.command == "submit" and args.directory == "examples/support-bot/v1"
    assert args.local_state == ".modelgate-local.json"


def test_the_local_state_file_can_be_named_or_come_from_the_environment(monkeypatch):
    args = cli.build_parser().parse_args(["--local", "--local-state", "/tmp/x.json", "status"])
    assert args.local and args.local_state == "/tmp/x.json"
    monkeypatch.setenv("MODELGATE_LOCAL", "/tmp/from-env.json")
    args = cli.build_parser().parse_args(["status"])
    assert args.local and args.local_state == "/tmp/from-env.json"


def test_without_local_the_commands_go_to_aws(monkeypatch):
    monkeypatch.delenv("MODELGATE_LOCAL", raising=False)
    assert cli.build_parser().parse_args(["status"]).local is False


@pytest.mark.parametrize(
    "argv",
    [
        ["local", "up", "-t", "/nowhere/template.yaml"],
        ["invoke", "ValidateFunction", "-e", "/nowhere/event.json", "-t", "/nowhere/template.yaml"],
        ["eval", "/nowhere/release", "--dataset", "/nowhere/dataset.jsonl"],
    ],
)
def test_a_missing_file_is_one_clear_line_not_a_traceback(argv, capsys):
    # When a command is run outside the project folder (or with a wrong path)
    code = cli.main(argv)
    err = capsys.readouterr().err
    # Then it exits 2 with one line naming what is missing
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("modelgate: ") and "/nowhere/" in err
    assert "Traceback" not in err
