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


def test_local_up_refuses_a_template_whose_code_lies_outside_its_project(tmp_path, capsys):
    # Given a project folder whose template points a function's CodeUri at a folder elsewhere on the machine
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "fn").mkdir(parents=True)
    project = tmp_path / "project"
    (project / "functions" / "ok").mkdir(parents=True)
    template = project / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n"
        "  Ok:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: functions/ok/\n"
        "  Away:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: ../elsewhere/fn/\n"
    )
    # When `modelgate local up` is run with it
    code = cli.main(["local", "up", "-t", str(template)])
    # Then it refuses in one line naming the resource, before deploying or serving anything
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "Away.CodeUri is ../elsewhere/fn/, outside the project folder" in err
    # and an absolute path or a symlink out of the project is refused alike
    (project / "link").symlink_to(elsewhere / "fn")
    for uri in (str(elsewhere / "fn"), "link/"):
        template.write_text(template.read_text().replace(
            template.read_text().split("CodeUri: ")[-1].splitlines()[0], uri))
        with pytest.raises(cli.TemplateOutsideProject, match="Away.CodeUri"):
            cli.project_code_only(template)


def test_the_project_template_runs_its_own_code_only():
    # The real template's every local path is inside the project: local up accepts it
    from pathlib import Path

    cli.project_code_only(Path(__file__).resolve().parents[2] / "template.yaml")


def test_status_shows_stored_text_on_one_line_with_escapes_shown_not_acted_on():
    from modelgate_harness.control import format_release, format_table

    # Given a ledger record whose branch, author and reason carry newlines and terminal escapes
    record = {
        "pk": "RELEASE#support-bot-abc-1", "release_id": "support-bot-abc-1", "service": "support-bot",
        "commit": "abc1234", "branch": "main\nstatus    Promoted\x1b[2K", "author": "bob\x1b]0;owned\x07",
        "status": "Rejected", "reason": "rejected by x: \x1b[31mLGTM\x1b[0m\r\nstatus    Promoted",
        "history": [{"at": "t", "status": "Rejected", "actor": "link:anyone", "detail": "a\u202eb\nc"}],
    }
    # When shown / Then no control character reaches the terminal, and no line is forged
    for shown in (format_release(record), format_table([record])):
        assert not any(ch in shown for ch in ("\x1b", "\r", "\x07", "\u202e"))
        assert not any(line.startswith("status    Promoted") for line in shown.splitlines())
    shown = format_release(record)
    assert "branch main\\nstatus    Promoted\\x1b[2K" in shown and "\\x1b[31mLGTM" in shown


def test_an_unexpected_error_is_still_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    # Given a command that fails in a way nobody planned for (its message spans lines, with an escape)
    def broken(args):
        raise RuntimeError("first line\nsecond line \x1b[31mred\x1b[0m")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["status"].set_defaults(func=broken)
    monkeypatch.delenv("MODELGATE_DEBUG", raising=False)
    # When it runs / Then one line, exit 2, the escape shown not sent
    assert cli.main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected RuntimeError: first line second line \\x1b[31mred" in err
    # and with MODELGATE_DEBUG the traceback is there for whoever debugs it
    monkeypatch.setenv("MODELGATE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["status"])


def test_the_trail_commands_parse_as_the_readme_writes_them():
    parse = cli.build_parser().parse_args
    args = parse(["verify", "support-bot-abc-123", "--public-key", "staging.pem"])
    assert (args.command, args.release, args.public_key) == ("verify", "support-bot-abc-123", "staging.pem")
    args = parse(["audit", "support-bot", "--since", "2026-11-01", "--format", "csv"])
    assert (args.service, args.since, args.format) == ("support-bot", "2026-11-01", "csv")
    assert parse(["audit", "support-bot"]).format == "json"
    args = parse(["trust", "staging", "--public-key", "staging.pem"])
    assert (args.stage, args.public_key, args.replace) == ("staging", "staging.pem", False)
    args = parse(["submit", "dir", "--attestation", "staging.intoto.json"])
    assert args.attestation == "staging.intoto.json"


@pytest.mark.parametrize("argv", [["audit", "svc", "--format", "xml"], ["trust", "staging"]])
def test_a_bad_trail_command_is_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(argv)
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("since", ["not-a-date", "2026-13-01", "yesterday", "30/11/2026", ""])
def test_an_audit_since_that_is_no_iso_date_is_refused_naming_the_value(since, capsys):
    # a careless --since used to compare as a string and export nothing, with exit 0
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["audit", "support-bot", "--since", since])
    assert f"{since!r} is not an ISO 8601 date or time" in capsys.readouterr().err


def test_an_audit_since_keeps_the_date_or_time_as_given():
    parse = cli.build_parser().parse_args
    assert parse(["audit", "s", "--since", "2026-11-30T09:00:00+00:00"]).since == "2026-11-30T09:00:00+00:00"


class _LateLedger:
    """A ledger whose record appears after ``misses`` reads (intake has not run yet), on a fake clock."""

    def __init__(self, misses: int) -> None:
        self.misses, self.reads, self.now = misses, 0, 0.0

    def get(self, release):
        self.reads += 1
        return None if self.reads <= self.misses else {"pk": f"RELEASE#{release}", "status": "Received"}

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_status_wait_asks_again_until_intake_wrote_the_record():
    ledger = _LateLedger(misses=3)
    record = cli._get_waiting(ledger, "support-bot-abc-1", 120.0, sleep=ledger.sleep, monotonic=lambda: ledger.now)
    assert record["status"] == "Received" and ledger.reads == 4
    assert ledger.now == 0.5 + 1.0 + 2.0  # backing off, not hammering the table


def test_status_wait_gives_up_after_its_seconds_and_without_it_asks_once():
    ledger = _LateLedger(misses=10**6)
    assert cli._get_waiting(ledger, "r", 10.0, sleep=ledger.sleep, monotonic=lambda: ledger.now) is None
    assert ledger.now == 10.0  # never past the wait it was given
    once = _LateLedger(misses=1)
    assert cli._get_waiting(once, "r", 0.0, sleep=once.sleep, monotonic=lambda: once.now) is None and once.reads == 1


@pytest.mark.parametrize("bad", ["-1", "901", "soon", "nan"])
def test_status_wait_refuses_a_bad_number_of_seconds(bad, capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["status", "r", "--wait", bad])
    assert "seconds" in capsys.readouterr().err
