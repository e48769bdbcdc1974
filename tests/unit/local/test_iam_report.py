"""The least-privilege report's logic: grants, matching, merging, reasons."""

from __future__ import annotations

import json

from modelgate_emulator import iam_report
from modelgate_emulator.iam_report import Grant, grants_of, iam_pattern_matches, mark_used, merge


def test_iam_wildcards_match_as_iam_does():
    assert iam_pattern_matches("dynamodb:*", "DynamoDB:GetItem", case_sensitive=False)
    assert iam_pattern_matches("arn:aws:s3:::b/reports/*", "arn:aws:s3:::b/reports/x/y.json")
    assert not iam_pattern_matches("arn:aws:s3:::b/reports/*", "arn:aws:s3:::b/releases/x")
    assert iam_pattern_matches("alarm:stack-canary-?", "alarm:stack-canary-1")
    assert not iam_pattern_matches("alarm:stack-canary-?", "alarm:stack-canary-12")
    # resources are case sensitive
    assert not iam_pattern_matches("arn:aws:s3:::B/*", "arn:aws:s3:::b/x")


def test_grants_are_allow_action_by_resource_pairs():
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": ["arn:a", "arn:b"]},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "sns:Publish", "Resource": "arn:t", "Condition": {"Bool": {"x": "true"}}},
        ]
    }
    grants = grants_of("Fn", "FnRole", "p", document)
    assert [(g.statement, a, r) for g, a, r in grants] == [
        (0, "s3:GetObject", "arn:a"),
        (0, "s3:GetObject", "arn:b"),
        (0, "s3:PutObject", "arn:a"),
        (0, "s3:PutObject", "arn:b"),
        (2, "sns:Publish", "arn:t"),
    ]
    assert grants[-1][0].conditional


def test_a_grant_is_used_when_an_allowed_request_matches_it():
    patterns = {"k1": ("s3:GetObject", "arn:aws:s3:::b/*"), "k2": ("s3:PutObject", "arn:aws:s3:::b/reports/*")}
    used = mark_used(patterns, [("s3:getobject", "arn:aws:s3:::b/releases/x")])
    assert used == {"k1"}


def _snapshot(used: bool, reasons: dict) -> dict:
    grant = Grant("Fn", "FnRole", "FnRolePolicy0", 0, "dynamodb:DeleteItem", "${LedgerTable.Arn}")
    return {"stack": "s", "template": "template.yaml", "grants": [vars(grant)], "used": [grant.key] if used else [], "denied": [], "reasons": reasons}


def test_unused_grant_without_reason_fails_the_report_and_a_reason_justifies_it():
    report = merge([_snapshot(False, {})])
    assert not report.ok
    assert [r["action"] for r in report.unjustified] == ["dynamodb:DeleteItem"]

    justified = merge([_snapshot(False, {"Fn": {"dynamodb:DeleteItem": "clears the token on a retry"}})])
    assert justified.ok
    assert justified.rows[0]["reason"] == "clears the token on a retry"
    assert "justified" in iam_report.render_markdown(justified)


def test_a_grant_used_by_any_snapshot_is_used():
    report = merge([_snapshot(False, {}), _snapshot(True, {})])
    assert report.ok and report.rows[0]["used"]
    assert "| used |" in iam_report.render_markdown(report)


def test_denied_calls_are_listed(tmp_path):
    snap = _snapshot(True, {})
    snap["denied"] = [{"role": "FnRole", "action": "s3:PutObject", "resource": "x", "reason": "no policy"}]
    (tmp_path / "pytest-1.json").write_text(json.dumps([snap]))
    report = iam_report.build(tmp_path)
    assert report.ok and report.denied
    assert "s3:PutObject" in (tmp_path / "iam-report.md").read_text()
    assert iam_report.main([str(tmp_path)]) == 0


def test_build_without_records_says_so(tmp_path, capsys):
    assert iam_report.main([str(tmp_path)]) == 2
    assert "no IAM session records" in capsys.readouterr().err


def test_a_managed_policys_own_reason_wins_over_the_owners_catch_all():
    # Given an unused grant of an AWS-managed policy on a function whose Metadata has a "*" reason
    managed = Grant("Fn", "FnRole", "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess", 0, "xray:PutTraceSegments", "*")
    own = Grant("Fn", "FnRole", "FnRolePolicy0", 0, "dynamodb:DeleteItem", "${LedgerTable.Arn}")
    snap = {
        "stack": "s",
        "template": "template.yaml",
        "grants": [vars(managed), vars(own)],
        "used": [],
        "denied": [],
        "reasons": {
            "Fn": {"*": "the supersede path"},
            iam_report.GLOBAL_REASONS: {managed.policy: "Lambda sends traces with the role"},
        },
    }
    # Then the managed grant is justified by its policy's reason, the function's own by the catch-all
    rows = {row["action"]: row["reason"] for row in merge([snap]).rows}
    assert rows == {"xray:PutTraceSegments": "Lambda sends traces with the role", "dynamodb:DeleteItem": "the supersede path"}


def test_of_two_statements_differing_only_in_a_condition_the_one_that_allowed_is_used():
    # Intake: WriteReleaseRecord (RELEASE#*) and ChainRefused (CHAIN#*) both grant PutItem on the ledger.
    patterns = {"release": ("dynamodb:PutItem", "arn:t"), "chain": ("dynamodb:PutItem", "arn:t")}
    conditional = {"release": ("P0", "P0#WriteReleaseRecord"), "chain": ("P0", "P0#ChainRefused")}
    allowed_by_release = ("dynamodb:PutItem", "arn:t", ("P0#WriteReleaseRecord",))
    assert mark_used(patterns, [allowed_by_release], conditional) == {"release"}
    assert mark_used(patterns, [allowed_by_release]) == {"release", "chain"}  # without the statements: patterns only
    # matched ids of another naming (a managed policy's ARN): the patterns decide
    assert mark_used(patterns, [("dynamodb:PutItem", "arn:t", ("arn:aws:iam::1:policy/x#0",))], conditional) == {
        "release",
        "chain",
    }
