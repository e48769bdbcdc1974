"""`make demo` saves every HTML report of the in-memory bucket to a local folder, with an index."""

from __future__ import annotations

from types import SimpleNamespace

from modelgate_harness.demo import save_all_reports


def test_every_html_report_is_saved_with_an_index_naming_what_it_is(aws_env, tmp_path):
    # Given a bucket holding two releases' evaluation reports, a re-evaluation and a JSON report
    from modelgate.adapters import clients as aws

    client = aws.client("s3")
    client.create_bucket(Bucket="artefacts")
    for key in ("reports/support-bot/support-bot-aaa/evaluation.html", "reports/support-bot/support-bot-bbb/evaluation.html",
                "reports/support-bot/monitor/reevaluation-20261130T000000Z-v2.html",
                "reports/support-bot/support-bot-aaa/evaluation.json"):
        client.put_object(Bucket="artefacts", Key=key, Body=f"<html>{key}</html>".encode())
    ledger = SimpleNamespace(list_releases=lambda limit: [
        {"release_id": "support-bot-aaa", "status": "Promoted", "candidate_version": "2"}])
    control = SimpleNamespace(bucket="artefacts", client=lambda name: client, ledger=lambda: ledger)
    # When the demo saves them
    saved = save_all_reports(control, tmp_path)
    # Then every HTML report is a local file with its content, and only those
    assert sorted(p.relative_to(tmp_path).as_posix() for p in saved) == [
        "support-bot/monitor/reevaluation-20261130T000000Z-v2.html",
        "support-bot/support-bot-aaa/evaluation.html", "support-bot/support-bot-bbb/evaluation.html"]
    assert (tmp_path / "support-bot/support-bot-aaa/evaluation.html").read_text() == (
        "<html>reports/support-bot/support-bot-aaa/evaluation.html</html>")
    # And the index links each, saying what it is
    index = (tmp_path / "index.html").read_text()
    assert index.count("<a href=") == 3
    assert "evaluation of release support-bot-aaa (version 2): Promoted" in index
    assert "scheduled re-evaluation of live: reevaluation-20261130T000000Z-v2" in index
