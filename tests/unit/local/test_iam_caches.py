"""The layer's module caches are per execution environment while IAM is enforced, so a cache one
function filled never lets another function's call pass unauthorised (``iam_caches``)."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelgate_emulator import LocalAWS, iam_caches
from modelgate_emulator.iam_caches import EnvironmentScopedDict
from modelgate_emulator.lambda_runtime import LambdaInvokeError

ROOT = Path(__file__).resolve().parents[3]
LAYER = ROOT / "src" / "modelgate"

# Every module-level cache of the layer that holds no AWS response, and why (the rest must be
# in iam_caches.SCOPED_CACHES). Handler modules (functions/*/app.py) are loaded per execution
# environment already, so their module state needs nothing.
NOT_AWS_RESPONSES = {
    ("modelgate.inference", "load_bootstrap"): "reads the function's own code files",
    ("modelgate.providers", "parse_system_prompt"): "parses a prompt string",
    ("modelgate.providers", "_index"): "indexes parsed prompt knowledge",
    ("modelgate.providers", "get_provider"): "builds a client; each call it makes is authorised when made",
    ("modelgate.settings", "_cached"): "validates the function's environment variables",
    ("modelgate.adapters.clients", "client"): "boto3 clients; each call is authorised when made",
    ("modelgate.adapters.clients", "table"): "boto3 Table resources; each call is authorised when made",
    ("modelgate.evaluation.scorers", "SCORERS"): "the scorer registry, filled at import",
    ("modelgate.evaluation.scorers", "SPECS"): "the scorer registry, filled at import",
    ("modelgate.evaluation.scorers", "_compiled"): "compiles the scorers' regex patterns",
    ("modelgate.refusal", "compiled"): "compiles the refusal patterns (constants)",
}


def _module_caches() -> set[tuple[str, str]]:
    """(module, name) of each module-level empty dict and each ``lru_cache`` / ``cache`` function."""
    found = set()
    for path in LAYER.rglob("*.py"):
        module = ".".join(path.relative_to(LAYER.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                value = node.value
                empty = (isinstance(value, ast.Dict) and not value.keys) or (
                    isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict"
                    and not value.args and not value.keywords
                )
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if empty:
                    found |= {(module, t.id) for t in targets if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                    if name in ("lru_cache", "cache"):
                        found.add((module, node.name))
    return found


def test_every_module_cache_of_the_layer_is_scoped_or_holds_no_aws_response():
    caches = _module_caches()
    assert ("modelgate.approval.keys", "_cache") in caches  # the scan finds them
    unclassified = caches - set(iam_caches.SCOPED_CACHES) - set(NOT_AWS_RESPONSES)
    assert sorted(unclassified) == [], "scope it in iam_caches.SCOPED_CACHES or say why it needs nothing"
    assert sorted((set(iam_caches.SCOPED_CACHES) | set(NOT_AWS_RESPONSES)) - caches) == []  # nothing stale


def test_a_scoped_dict_keeps_one_dict_per_execution_environment(monkeypatch):
    scoped = EnvironmentScopedDict()
    monkeypatch.delenv(iam_caches.ENVIRONMENT_VARIABLE, raising=False)
    scoped["k"] = "outside"
    monkeypatch.setenv(iam_caches.ENVIRONMENT_VARIABLE, "2026/11/30/[$LATEST]aaa")
    assert "k" not in scoped and scoped.get("k") is None and len(scoped) == 0
    scoped["k"] = "a"
    scoped["j"] = "a2"
    assert scoped.pop(next(iter(scoped))) == "a"  # the layer's bounded caches evict this way
    monkeypatch.setenv(iam_caches.ENVIRONMENT_VARIABLE, "2026/11/30/[$LATEST]bbb")
    scoped["k"] = "b"
    assert scoped.scopes() == {
        "": {"k": "outside"},
        "2026/11/30/[$LATEST]aaa": {"j": "a2"},
        "2026/11/30/[$LATEST]bbb": {"k": "b"},
    }
    scoped.clear()  # the layer's clear_*_cache: every environment forgets
    assert scoped.scopes() == {}


TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  SigningSecret:
    Type: AWS::SecretsManager::Secret
    Properties:
      SecretString: "a-signing-key-of-at-least-thirty-two-bytes"
  Reader:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.lambda_handler
      Runtime: python3.12
      Timeout: 30
      Environment:
        Variables:
          SECRET_ARN: !Ref SigningSecret
      Policies:
        - Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource: !Ref SigningSecret
  Other:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.lambda_handler
      Runtime: python3.12
      Timeout: 30
      Environment:
        Variables:
          SECRET_ARN: !Ref SigningSecret
"""

HANDLER = """\
import os

import boto3

from modelgate.approval import keys


def lambda_handler(event, context):
    return len(keys.load_signing_keys(boto3.client("secretsmanager"), os.environ["SECRET_ARN"]))
"""


@pytest.fixture
def two_roles(tmp_path: Path) -> Iterator[LocalAWS]:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(textwrap.dedent(HANDLER))
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    with LocalAWS(tmp_path / "template.yaml", stack_name="iam-caches") as local:
        yield local


def _reads(local: LocalAWS, role: str) -> list[bool]:
    return [
        r.allowed
        for r in local.enforcer.records
        if r.action == "secretsmanager:GetSecretValue" and f"-{role}Role-" in str(r.role_arn)
    ]


def test_a_cache_filled_by_one_function_does_not_let_another_function_pass(two_roles):
    local = two_roles
    assert local.invoke("Reader", {}) == 1
    assert local.invoke("Reader", {}) == 1  # warm: served from its environment's cache
    assert _reads(local, "Reader") == [True, True]  # AWSCURRENT and AWSPREVIOUS, once
    with pytest.raises(LambdaInvokeError) as denied:
        local.invoke("Other", {})  # the process-wide cache would have answered without a call
    assert "AccessDeniedException" in str(denied.value)
    assert "secretsmanager:GetSecretValue" in str(denied.value)
    assert _reads(local, "Other") == [False]
