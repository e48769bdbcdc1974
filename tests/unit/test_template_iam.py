"""template.yaml's roles name no managed service: grants are scoped by the managed name prefix.

So registering a service is an SSM parameter and a function named <stack>-svc-<service>,
never a template change (tests/statemachine/test_second_service.py shows one released).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICE_FUNCTIONS = {"SampleServiceFunction"}
MANAGED_ARN = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-svc-*"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


_CfnLoader.add_multi_constructor("!", _tag)


def _template() -> dict[str, Any]:
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)


def _policies() -> list[tuple[str, Any]]:
    out = []
    for name, resource in _template()["Resources"].items():
        for policy in (resource.get("Properties") or {}).get("Policies") or []:
            out.append((name, policy))
    return out


def _mentions(value: Any, names: set[str]) -> bool:
    text = json.dumps(value)
    return any(name in text for name in names)


def test_no_role_names_a_managed_service_function() -> None:
    offenders = [(name, policy) for name, policy in _policies() if _mentions(policy, SERVICE_FUNCTIONS)]
    assert offenders == []


def test_the_checker_sees_a_role_that_names_one() -> None:
    # The guard above must be able to fail: a statement naming the sample function is seen.
    assert _mentions({"Statement": [{"Resource": {"Fn::GetAtt": "SampleServiceFunction.Arn"}}]}, SERVICE_FUNCTIONS)


@pytest.mark.parametrize(
    "action", ["lambda:InvokeFunction", "lambda:UpdateAlias", "lambda:PublishVersion", "lambda:UpdateFunctionConfiguration"]
)
def test_grants_on_service_functions_are_scoped_to_the_managed_prefix(action: str) -> None:
    resources = []
    for _, policy in _policies():
        for statement in (policy.get("Statement") or []) if isinstance(policy, dict) else []:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if action in actions:
                resources += statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    assert resources, f"no role grants {action}"
    assert all(r == {"Sub": MANAGED_ARN} for r in resources), resources


def test_the_sample_service_is_named_with_the_managed_prefix() -> None:
    function = _template()["Resources"]["SampleServiceFunction"]["Properties"]
    assert function["FunctionName"] == {"Sub": "${AWS::StackName}-svc-support-bot"}
