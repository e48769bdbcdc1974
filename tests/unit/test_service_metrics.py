"""The service's per-request EMF document (modelgate.service_metrics)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest

from modelgate import service_metrics as sm

WHEN = datetime(2026, 11, 30, 9, 0, 5, tzinfo=UTC)
SCHEMA = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}


def metrics(document: dict) -> dict[str, tuple[float, int]]:
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == sm.NAMESPACE and directive["Dimensions"] == [["service", "version"]]
    return {m["Name"]: (document[m["Name"]][0], m.get("StorageResolution", 60)) for m in directive["Metrics"]}


def test_a_failed_request_reports_the_health_signal_at_high_resolution_and_nothing_it_did_not_produce():
    doc = sm.request_document(service="bot", version="4", when=WHEN, latency_ms=12.0, failed=True)
    assert doc["service"] == "bot" and doc["version"] == "4" and doc["_aws"]["Timestamp"] == 1796029205000
    assert metrics(doc) == {"Requests": (1.0, 1), "Failures": (1.0, 1), "Latency": (12.0, 1)}


def test_a_served_request_reports_usage_cost_refusal_length_and_schema_validity():
    response = {"output": '{"answer": "Settings"}', "usage": {"input_tokens": 30, "output_tokens": 7},
                "cost_usd": 0.0021}
    valid = sm.schema_valid(response["output"], SCHEMA)
    doc = sm.request_document(service="bot", version="4", when=WHEN, latency_ms=40.0, failed=False,
                              response=response, refusal=False, schema_valid=valid)
    got = metrics(doc)
    assert got["Failures"] == (0.0, 1) and got["InputTokens"] == (30.0, 60) and got["OutputTokens"] == (7.0, 60)
    assert got["Cost"] == (0.0021, 60) and got["Refusals"] == (0.0, 60)
    assert got["OutputLength"] == (len(response["output"]), 60) and got["SchemaValid"] == (1.0, 60)


@pytest.mark.parametrize(("output", "valid"), [('{"answer": "x"}', True), ('{"answer": 3}', False),
                                               ("not json", False), ("{}", False)])
def test_schema_validity(output, valid):
    assert sm.schema_valid(output, SCHEMA) is valid


def test_emit_is_one_line_in_one_write(monkeypatch):
    writes: list[str] = []
    stream = io.StringIO()
    monkeypatch.setattr("sys.stdout", type("S", (), {"write": lambda self, t: writes.append(t) or stream.write(t),
                                                     "flush": lambda self: None})())
    sm.emit(sm.request_document(service="bot", version="1", when=WHEN, latency_ms=1.0, failed=True))
    assert len(writes) == 1 and writes[0].startswith('{"_aws":') and writes[0].endswith("\n")
    assert json.loads(writes[0])["Failures"] == [1.0]
