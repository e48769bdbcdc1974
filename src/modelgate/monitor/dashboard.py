"""A CloudWatch dashboard per service: what people look at between releases.

Traffic and errors by executed version, live's p95 latency, cost and drift scores (the
service's own metrics in the stack's metrics namespace, found by a search expression so a
new metric shows without a dashboard change), and the releases marked on the time axis as
vertical annotations, with the latest monitoring events as text beside them. Written with
PutDashboard ("PutDashboard", Amazon CloudWatch API Reference,
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html; body
structure: "Dashboard Body Structure and Syntax", CloudWatch API Reference,
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html;
search expressions: "CloudWatch search expression syntax", CloudWatch User Guide,
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/search-expression-syntax.html)
by the monitor function after each scheduled check, so the annotations follow the ledger.
"""

from __future__ import annotations

import json
import re
from typing import Any

from modelgate.monitor.journal import Journal
from modelgate.pipeline.deps import Deps
from modelgate.policy import ServiceConfig, managed_function_prefix
from modelgate.registry import get_service

METRICS_NAMESPACE = "Modelgate"  # template.yaml's POWERTOOLS_METRICS_NAMESPACE
MAX_ANNOTATIONS = 20
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def dashboard_name(stack_name: str, service: str) -> str:
    """``<stack>-<service>``: DashboardName allows A-Z a-z 0-9 - _ only, at most 255 characters."""
    return _NAME_UNSAFE.sub("-", f"{stack_name}-{service}")[:255]


def release_annotations(releases: list[dict]) -> list[dict[str, str]]:
    """One vertical annotation per release that moved live: promoted, or rolled back."""
    marks = []
    for record in releases:
        status = record.get("status")
        if status not in ("Promoted", "RolledBack"):
            continue
        when = record.get("promoted_at") if status == "Promoted" else record.get("updated_at")
        if not when:
            continue
        version = record.get("candidate_version") if status == "Promoted" else record.get("live_version")
        label = f"{status} {record.get('commit', '')[:7]} (v{version})".strip()
        marks.append({"label": label, "value": str(when)})
    return sorted(marks, key=lambda m: m["value"])[-MAX_ANNOTATIONS:]


def dashboard_body(config: ServiceConfig, region: str, releases: list[dict], events: list[dict]) -> dict[str, Any]:
    fn, alias, service = config.function_name, config.alias, config.service
    annotations = {"vertical": release_annotations(releases)}

    def by_version(metric: str) -> list[Any]:
        return [[{"expression": f"SEARCH('{{AWS/Lambda,ExecutedVersion,FunctionName,Resource}} "
                                f"MetricName=\"{metric}\" FunctionName=\"{fn}\"', 'Sum', 60)",
                  "id": metric.lower(), "label": "version"}]]

    def custom(term: str, stat: str) -> list[Any]:
        return [[{"expression": f"SEARCH('Namespace=\"{METRICS_NAMESPACE}\" \"{service}\" {term}', '{stat}', 300)",
                  "id": term, "label": term}]]

    def metric_widget(title: str, metrics: list[Any], x: int, y: int, **extra: Any) -> dict[str, Any]:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "view": "timeSeries", "metrics": metrics,
                               "annotations": annotations, **extra}}

    lines = [f"**{service}** (`{fn}:{alias}`): latest monitoring events", ""]
    lines += [f"* {e.get('at', '')[:19]} {e.get('kind')}: {str(e.get('summary', ''))[:200]}" for e in events[:10]]
    if not events:
        lines.append("* none yet")
    return {"widgets": [
        metric_widget("Traffic by version (invocations)", by_version("Invocations"), 0, 0, stat="Sum"),
        metric_widget("Errors by version", by_version("Errors"), 12, 0, stat="Sum"),
        metric_widget("Live latency p95 (ms)",
                      [["AWS/Lambda", "Duration", "FunctionName", fn, "Resource", f"{fn}:{alias}", {"stat": "p95"}]],
                      0, 6, period=60),
        metric_widget("Cost (USD)", custom("cost", "Sum"), 12, 6),
        metric_widget("Drift scores", custom("drift", "Maximum"), 0, 12),
        {"type": "text", "x": 12, "y": 12, "width": 12, "height": 6,
         "properties": {"markdown": "\n".join(lines).replace("|", "\\|")}},
    ]}


def publish_dashboard(deps: Deps, service: str) -> str:
    """PutDashboard of the service's dashboard from its registration, ledger and journal; its name."""
    config = get_service(
        deps.ssm, deps.settings.services_prefix, service, function_prefix=managed_function_prefix(deps.settings.stack_name)
    )
    releases = deps.ledger.list_releases(service=service, limit=200)
    events = Journal(deps.ledger.table).events(service, limit=10)
    region = deps.cloudwatch.meta.region_name
    name = dashboard_name(deps.settings.stack_name, service)
    body = dashboard_body(config, region, releases, events)
    deps.cloudwatch.put_dashboard(DashboardName=name, DashboardBody=json.dumps(body))
    return name
