"""Deploy a SAM/CloudFormation template into moto, from the template itself.

Why not moto's CloudFormation (create_stack)? In moto 5.2.1 it skips AWS::CloudWatch::Alarm
and AWS::Lambda::Alias silently, puts state machines into the non-executing Step Functions
backend, ignores DefinitionSubstitutions and the bucket's EventBridge setting, and its
Fn::Sub turns ``$$.Task.Token`` into ``$.Task.Token``. So this module does what
``sam deploy`` does, in process:

1. load template.yaml (cfn_flip), replace local CodeUri/ContentUri/DefinitionUri paths by
   placeholder S3 locations and remember each path (relative to the template's folder);
2. transform SAM → CloudFormation with aws-sam-translator (offline: the bundled
   managed-policy list stands in for IAM);
3. resolve Parameters (defaults + overrides), Conditions and intrinsics (Ref incl. pseudo
   parameters, Fn::GetAtt, Fn::Sub in both forms - ``$$`` stays ``$$``, ``${!X}`` becomes
   ``${X}`` - Fn::Join, Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or, Fn::Select,
   Fn::Split, Fn::FindInMap, Fn::Base64);
4. create the resources in dependency order with boto3 against moto, with CloudFormation-
   style generated physical names.

Every resource comes from the template: a resource missing there is missing locally.
An unsupported resource type, attribute or intrinsic is a :class:`TemplateError` naming it;
a property a handler does not apply is logged and listed in :attr:`Stack.notes`.
IAM roles and policies are created in moto and enforced by ``iam``; an AWS-managed policy
moto has not loaded is read from moto's bundled copy of AWS's list (``iam.attach_aws_managed``).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import random
import re
import string
import threading
import uuid
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

from botocore.exceptions import ClientError

from modelgate_emulator import iam as iam_enforcement
from modelgate_emulator.lambda_runtime import FunctionCode, LambdaRuntime

LOG = logging.getLogger(__name__)

LOCAL_ARTIFACT_BUCKET = "modelgate-local-artifacts"
_NO_VALUE = object()
_SERVERLESS_LOCAL_URIS = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}
_PSEUDO = ("AWS::StackName", "AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix", "AWS::StackId", "AWS::NotificationARNs", "AWS::NoValue")
_SUB_RE = re.compile(r"\$\{([^}]*)\}")


class TemplateError(Exception):
    """The template can't be deployed locally; the message names the resource and why."""


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """What the local runtime needs to run one function like Lambda would."""

    logical_id: str
    function_name: str
    arn: str
    code_dir: Path | None
    handler: str
    runtime: str
    layer_dirs: tuple[Path, ...]
    environment: dict[str, str]
    timeout: int
    memory_size: int


@dataclasses.dataclass(frozen=True)
class DeployedResource:
    logical_id: str
    type: str
    physical_id: str
    attributes: dict[str, Any]
    # The resolved properties it was created or last updated with (what a redeploy compares).
    properties: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)


@dataclasses.dataclass
class Stack:
    """A deployed stack: physical ids by logical id, outputs, function specs."""

    name: str
    region: str
    account_id: str
    template_path: Path
    parameters: dict[str, Any]
    resources: dict[str, DeployedResource]
    outputs: dict[str, Any]
    functions: dict[str, FunctionSpec]
    notes: list[str]
    # What a redeploy needs: the translated template and each layer version's local folder.
    cfn_template: dict[str, Any] = dataclasses.field(default_factory=dict)
    stack_id: str = ""
    layer_dirs: dict[str, Path] = dataclasses.field(default_factory=dict)

    def physical_id(self, logical_id: str) -> str:
        try:
            return self.resources[logical_id].physical_id
        except KeyError:
            raise KeyError(f"stack {self.name} has no resource {logical_id!r}") from None

    def attribute(self, logical_id: str, name: str) -> Any:
        resource = self.resources[logical_id]
        try:
            return resource.attributes[name]
        except KeyError:
            raise KeyError(f"{logical_id} ({resource.type}) has no attribute {name!r}") from None

    def function(self, ref: str) -> FunctionSpec:
        """A function by logical id, physical name, ARN or code path ("functions/gate/")."""
        if ref in self.functions:
            return self.functions[ref]
        for spec in self.functions.values():
            if ref in (spec.function_name, spec.arn):
                return spec
        if "/" in ref and not ref.startswith("arn:"):
            code_dir = (self.template_path.parent / ref).resolve()
            matches = [spec for spec in self.functions.values() if spec.code_dir == code_dir]
            if len(matches) == 1:
                return matches[0]
        raise KeyError(f"stack {self.name} has no function {ref!r} (known: {', '.join(self.functions)})")

    def function_name(self, logical_id: str) -> str:
        return self.function(logical_id).function_name


# ---------------------------------------------------------------------------- loading
# Parsing and translating are pure functions of their inputs, and the tests deploy the same
# template hundreds of times per process: each result is kept per process as JSON text, keyed
# by a digest of what it was made from, and every caller gets fresh dicts of its own (a stack
# can't change another's template). Bounded: a long process that edits templates keeps the newest.
_CACHE_ENTRIES = 16
_LOADED: dict[str, str] = {}
_TRANSLATED: dict[str, str] = {}
_CACHE_LOCK = threading.Lock()


def _cached(cache: dict[str, str], key: str, make: Callable[[], Any]) -> Any:
    with _CACHE_LOCK:
        text = cache.get(key)
    if text is None:
        text = json.dumps(make())
        with _CACHE_LOCK:
            cache[key] = text
            while len(cache) > _CACHE_ENTRIES:
                cache.pop(next(iter(cache)))
    return json.loads(text)


@functools.cache
def _cfn_yaml_loader() -> type:
    """cfn_flip's loader (``!Ref`` short forms, ODict mappings) on libyaml's parser when PyYAML
    has it: the same constructors, 5-10 times faster than the pure-Python scanner on template.yaml."""
    import yaml
    from cfn_tools.yaml_loader import TAG_MAP, CfnYamlLoader, construct_mapping, multi_constructor

    base = getattr(yaml, "CSafeLoader", None)
    if base is None:
        return CfnYamlLoader

    class CfnCYamlLoader(base):  # type: ignore[misc, valid-type]
        pass

    CfnCYamlLoader.add_constructor(TAG_MAP, construct_mapping)
    CfnCYamlLoader.add_multi_constructor("!", multi_constructor)
    return CfnCYamlLoader


def parse_template_text(text: str) -> dict[str, Any]:
    """A YAML or JSON template as plain dicts and lists (what cfn_flip's ``load_yaml`` reads)."""
    import yaml

    loaded = yaml.load(text, Loader=_cfn_yaml_loader())  # a SafeConstructor loader, as cfn_flip's
    plain: dict[str, Any] = json.loads(json.dumps(loaded))  # plain dicts (cfn_flip returns ODicts)
    return plain


def load_template(template_path: str | os.PathLike[str]) -> dict[str, Any]:
    text = Path(template_path).read_text(encoding="utf-8")
    return _cached(_LOADED, hashlib.sha256(text.encode()).hexdigest(), lambda: parse_template_text(text))


def translate(
    template: Mapping[str, Any], template_dir: Path, *, region: str, parameters: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Path]]:
    """SAM → CloudFormation. Returns the template and the local path per placeholder key."""
    source = copy.deepcopy(dict(template))
    local_paths: dict[str, Path] = {}

    def placeholder(key: str, value: Any) -> Any:
        if isinstance(value, str) and not value.startswith("s3://"):
            path = (template_dir / value).resolve()
            if not path.exists():
                raise TemplateError(f"{key}: local path {value!r} does not exist (relative to {template_dir})")
            local_paths[key] = path
            # The key carries a digest of the content, as `sam build` + `sam package` upload each
            # build under a new S3 key: a code change is a property change (a redeploy updates the
            # function; AutoPublishAlias publishes a version), unchanged code is not.
            return f"s3://{LOCAL_ARTIFACT_BUCKET}/{key}/{content_digest(path)}"
        return value

    for logical_id, resource in (source.get("Resources") or {}).items():
        properties = resource.get("Properties") or {}
        prop = _SERVERLESS_LOCAL_URIS.get(resource.get("Type", ""))
        if prop and prop in properties:
            properties[prop] = placeholder(logical_id, properties[prop])
        elif resource.get("Type") == "AWS::Lambda::Function" and isinstance(properties.get("Code"), str):
            properties["Code"] = _s3_location(placeholder(logical_id, properties["Code"]), "S3Bucket", "S3Key")
        elif resource.get("Type") == "AWS::Lambda::LayerVersion" and isinstance(properties.get("Content"), str):
            properties["Content"] = _s3_location(placeholder(logical_id, properties["Content"]), "S3Bucket", "S3Key")
        elif resource.get("Type") == "AWS::StepFunctions::StateMachine" and isinstance(properties.get("DefinitionS3Location"), str):
            properties["DefinitionS3Location"] = _s3_location(placeholder(logical_id, properties["DefinitionS3Location"]), "Bucket", "Key")
    global_function = ((source.get("Globals") or {}).get("Function") or {})
    if "CodeUri" in global_function:
        global_function["CodeUri"] = placeholder("Globals.Function", global_function["CodeUri"])

    transforms = source.get("Transform")
    transforms = transforms if isinstance(transforms, list) else [transforms] if transforms else []
    if not any(str(t).startswith("AWS::Serverless") for t in transforms):
        return source, local_paths

    from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
    from samtranslator.translator.transform import transform

    partition = _partition(region)

    class _BundledPolicies:
        def load(self) -> dict[str, str]:
            return get_bundled_managed_policy_map(partition) or {}

    def run_transform() -> Any:
        with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": region}):
            try:
                return transform(source, dict(parameters or {}), _BundledPolicies())
            except Exception as exc:
                raise TemplateError(f"SAM transform failed: {exc}") from exc

    # The placeholders carry each local folder's content digest, so changed code is a new key.
    key = hashlib.sha256(json.dumps([source, dict(parameters or {}), region], sort_keys=True).encode()).hexdigest()
    return _cached(_TRANSLATED, key, run_transform), local_paths


def content_digest(path: Path) -> str:
    """sha256 (16 hex digits) of a file, or of a folder's files and their relative paths
    (``__pycache__`` and ``*.pyc`` left out: the runtime writes them)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _s3_location(uri: Any, bucket_key: str, key_key: str) -> Any:
    if isinstance(uri, str) and uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        return {bucket_key: bucket, key_key: key}
    return uri


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# ---------------------------------------------------------------------------- intrinsics
class _Resolver:
    """Evaluates CloudFormation intrinsics against parameters and deployed resources."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, Any], pseudo: Mapping[str, Any]) -> None:
        self.template = template
        self.parameters = dict(parameters)
        self.pseudo = dict(pseudo)
        self.mappings = template.get("Mappings") or {}
        self.condition_defs = template.get("Conditions") or {}
        self.conditions: dict[str, bool] = {}
        self.deployed: dict[str, DeployedResource] = {}
        self.resource_types = {k: v.get("Type", "") for k, v in (template.get("Resources") or {}).items()}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            if name not in self.condition_defs:
                raise TemplateError(f"unknown condition {name!r}")
            self.conditions[name] = bool(self.resolve(self.condition_defs[name], where=f"Conditions.{name}"))
        return self.conditions[name]

    def ref(self, name: str, where: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name in self.deployed:
            return self.deployed[name].physical_id
        if name in self.resource_types:
            raise TemplateError(f"{where}: Ref {name} before it exists (skipped by a condition, or a dependency cycle)")
        raise TemplateError(f"{where}: Ref to unknown parameter or resource {name!r}")

    def get_att(self, logical_id: str, attribute: str, where: str) -> Any:
        resource = self.deployed.get(logical_id)
        if resource is None:
            if logical_id in self.resource_types:
                raise TemplateError(f"{where}: Fn::GetAtt {logical_id}.{attribute} before it exists")
            raise TemplateError(f"{where}: Fn::GetAtt of unknown resource {logical_id!r}")
        if attribute not in resource.attributes:
            raise TemplateError(
                f"{where}: Fn::GetAtt {logical_id}.{attribute} is not supported locally for {resource.type} "
                f"(supported: {', '.join(sorted(resource.attributes)) or 'none'})"
            )
        return resource.attributes[attribute]

    def sub(self, text: str, variables: Mapping[str, Any], where: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} is an escape for a literal ${Literal}
            name = name.strip()
            if name in variables:
                value = variables[name]
            elif "." in name and name.split(".", 1)[0] in self.resource_types:
                logical_id, attribute = name.split(".", 1)
                value = self.get_att(logical_id, attribute, where)
            else:
                value = self.ref(name, where)
            if isinstance(value, (dict, list)) or value is _NO_VALUE:
                raise TemplateError(f"{where}: Fn::Sub variable ${{{name}}} is not a string")
            return str(value)

        return _SUB_RE.sub(replace, text)  # "$$" is not an escape in CloudFormation: kept as is

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v, where) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg, where)
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key, arg, where)
        resolved = {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _function(self, name: str, arg: Any, where: str) -> Any:
        here = f"{where} {name}"
        if name == "Fn::GetAtt":
            logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else (arg[0], self.resolve(arg[1], here))
            return self.get_att(logical_id, attribute, here)
        if name == "Fn::Sub":
            if isinstance(arg, str):
                return self.sub(arg, {}, here)
            text, variables = arg
            return self.sub(text, {k: self.resolve(v, here) for k, v in variables.items()}, here)
        if name == "Fn::Join":
            delimiter, items = arg
            return str(delimiter).join(str(v) for v in self.resolve(items, here))
        if name == "Fn::If":
            condition, when_true, when_false = arg
            return self.resolve(when_true if self.condition(condition) else when_false, here)
        if name == "Fn::Equals":
            left, right = (self.resolve(v, here) for v in arg)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not self._truth(arg[0], here)
        if name == "Fn::And":
            return all(self._truth(v, here) for v in arg)
        if name == "Fn::Or":
            return any(self._truth(v, here) for v in arg)
        if name == "Fn::Select":
            index, items = arg
            items = self.resolve(items, here)
            return items[int(self.resolve(index, here))]
        if name == "Fn::Split":
            delimiter, text = arg
            return str(self.resolve(text, here)).split(delimiter)
        if name == "Fn::FindInMap":
            mapping, first, second = (self.resolve(v, here) for v in arg)
            try:
                return self.mappings[mapping][first][second]
            except KeyError:
                raise TemplateError(f"{here}: no mapping {mapping}.{first}.{second}") from None
        if name == "Fn::Base64":
            return base64.b64encode(str(self.resolve(arg, here)).encode()).decode()
        if name == "Fn::GetAZs":
            region = self.resolve(arg, here) or self.pseudo["AWS::Region"]
            return [f"{region}{suffix}" for suffix in "abc"]
        raise TemplateError(f"{where}: intrinsic function {name} is not supported locally")

    def _truth(self, value: Any, where: str) -> bool:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(value["Condition"])
        return bool(self.resolve(value, where))


def _references(value: Any, resource_ids: set[str]) -> set[str]:
    """Logical ids of resources ``value`` refers to (Ref, Fn::GetAtt, Fn::Sub)."""
    found: set[str] = set()

    def walk(node: Any, local_vars: frozenset[str] = frozenset()) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, local_vars)
        elif isinstance(node, dict):
            if len(node) == 1:
                (key, arg), = node.items()
                if key == "Ref" and isinstance(arg, str) and arg in resource_ids:
                    found.add(arg)
                    return
                if key == "Fn::GetAtt":
                    logical_id = arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]
                    if logical_id in resource_ids:
                        found.add(logical_id)
                    return
                if key == "Fn::Sub":
                    text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                    walk(variables)
                    for match in _SUB_RE.finditer(text):
                        name = match.group(1).strip()
                        if name.startswith("!") or name in variables:
                            continue
                        logical_id = name.split(".", 1)[0]
                        if logical_id in resource_ids:
                            found.add(logical_id)
                    return
            for item in node.values():
                walk(item, local_vars)

    walk(value)
    return found


def _deployment_order(resources: Mapping[str, Any]) -> list[str]:
    ids = set(resources)
    dependencies: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends_on = resource.get("DependsOn") or []
        depends_on = [depends_on] if isinstance(depends_on, str) else list(depends_on)
        unknown = [d for d in depends_on if d not in ids]
        if unknown:
            raise TemplateError(f"{logical_id}: DependsOn unknown resource(s) {unknown}")
        dependencies[logical_id] = (_references(resource.get("Properties") or {}, ids) | set(depends_on)) - {logical_id}
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(resources)  # template order breaks ties, so deploys are repeatable
    while remaining:
        ready = [r for r in remaining if dependencies[r] <= placed]
        if not ready:
            raise TemplateError(f"circular dependency between resources: {', '.join(sorted(remaining))}")
        for logical_id in ready:
            order.append(logical_id)
            placed.add(logical_id)
        remaining = [r for r in remaining if r not in placed]
    return order


# ---------------------------------------------------------------------------- deploy
def deploy(
    template_path: str | os.PathLike[str],
    *,
    client: Callable[[str], Any],
    stack_name: str,
    region: str,
    account_id: str,
    parameters: Mapping[str, str] | None = None,
    runtime: LambdaRuntime | None = None,
    seed: int | None = None,
) -> Stack:
    """Create every resource of the template through ``client(service)`` (boto3 on moto).

    ``runtime`` (if given) learns each function's and layer's local code directory.
    ``seed`` makes generated physical names repeatable.
    """
    path = Path(template_path).resolve()
    template = load_template(path)
    declared = template.get("Parameters") or {}
    unknown = sorted(set(parameters or {}) - set(declared))
    if unknown:
        raise TemplateError(f"parameter override(s) not declared in the template: {', '.join(unknown)}")
    cfn, local_paths = translate(template, path.parent, region=region, parameters=parameters)
    deployer = _Deployer(
        cfn,
        path=path,
        local_paths=local_paths,
        client=client,
        stack_name=stack_name,
        region=region,
        account_id=account_id,
        parameters=_parameter_values(declared, parameters or {}),
        runtime=runtime,
        rng=random.Random(seed),
    )
    return deployer.deploy()


def redeploy(
    stack: Stack,
    template_path: str | os.PathLike[str] | None = None,
    *,
    client: Callable[[str], Any],
    parameters: Mapping[str, str] | None = None,
    runtime: LambdaRuntime | None = None,
) -> Stack:
    """Apply a changed template to a deployed stack as a CloudFormation stack update does
    (what ``sam deploy`` of a changed template runs): resources whose resolved properties are
    unchanged are left alone; changed ones are updated in place (a function's code and
    configuration included) or replaced where CloudFormation replaces them; resources the
    template no longer has are deleted, unless their DeletionPolicy is Retain.

    Parameters not given keep their previous values (``UsePreviousValue``, which
    ``sam deploy`` / ``aws cloudformation deploy`` use for parameters they don't override);
    new ones take their defaults. Returns the updated :class:`Stack`.
    Source: "Update behaviors of stack resources",
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-update-behaviors.html

    A function's code is identified by a digest of its folder: published versions keep the
    folder they were published from, so change code in a new folder (as each ``sam build``
    uploads a new zip) if old versions must keep running the old code locally.
    """
    path = Path(template_path if template_path is not None else stack.template_path).resolve()
    template = load_template(path)
    declared = template.get("Parameters") or {}
    unknown = sorted(set(parameters or {}) - set(declared))
    if unknown:
        raise TemplateError(f"parameter override(s) not declared in the template: {', '.join(unknown)}")
    previous_values = {k: v for k, v in stack.parameters.items() if k in declared}
    values = _parameter_values(declared, {**previous_values, **(parameters or {})})
    cfn, local_paths = translate(template, path.parent, region=stack.region, parameters=values)
    deployer = _Deployer(
        cfn,
        path=path,
        local_paths=local_paths,
        client=client,
        stack_name=stack.name,
        region=stack.region,
        account_id=stack.account_id,
        parameters=values,
        runtime=runtime,
        rng=random.Random(),
        stack_id=stack.stack_id or None,
    )
    return deployer.deploy(previous=stack)


def _parameter_values(declared: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            value: Any = overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no Default and no value was given")
        kind = str(spec.get("Type", "String"))
        if kind.startswith("AWS::SSM::Parameter::Value"):
            raise TemplateError(f"parameter {name}: type {kind} is not supported locally; pass a value instead")
        if kind in ("CommaDelimitedList", "List<Number>") or kind.startswith("List<"):
            value = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
        else:
            value = str(value) if not isinstance(value, str) else value
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(a) for a in allowed]:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and isinstance(value, str) and not re.fullmatch(pattern, value):
            raise TemplateError(f"parameter {name}={value!r} does not match {pattern!r}")
        values[name] = value
    return values


def _tiny_zip(label: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("MODELGATE_LOCAL.txt", f"code runs in process from {label}\n")
    return buffer.getvalue()


def _tags_dict(tags: Any) -> dict[str, str]:
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t["Key"]): str(t["Value"]) for t in tags or []}


_Handler = Callable[["_Deployer", str, dict[str, Any]], tuple[str, dict[str, Any]]]


class _Deployer:
    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        path: Path,
        local_paths: Mapping[str, Path],
        client: Callable[[str], Any],
        stack_name: str,
        region: str,
        account_id: str,
        parameters: Mapping[str, Any],
        runtime: LambdaRuntime | None,
        rng: random.Random,
        stack_id: str | None = None,
    ) -> None:
        self.template = template
        self.path = path
        self.local_paths = local_paths
        self.client = client
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.partition = _partition(region)
        self.runtime = runtime
        self.rng = rng
        self.notes: list[str] = []
        self.functions: dict[str, FunctionSpec] = {}
        self.layer_dirs: dict[str, Path] = {}
        self.replaced: list[DeployedResource] = []  # replaced by a stack update, removed after it
        self.parameters = dict(parameters)
        stack_id = stack_id or f"arn:{self.partition}:cloudformation:{region}:{account_id}:stack/{stack_name}/{uuid.UUID(int=rng.getrandbits(128))}"
        url_suffix = "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"
        self.resolver = _Resolver(
            template,
            parameters,
            {
                "AWS::StackName": stack_name,
                "AWS::Region": region,
                "AWS::AccountId": account_id,
                "AWS::Partition": self.partition,
                "AWS::URLSuffix": url_suffix,
                "AWS::StackId": stack_id,
                "AWS::NotificationARNs": [],
            },
        )

    # ---------------------------------------------------------------- driver
    def deploy(self, previous: Stack | None = None) -> Stack:
        """Create every resource; with ``previous``, update that stack as CloudFormation does."""
        resources = self.template.get("Resources") or {}
        if previous is not None:
            self.functions.update(previous.functions)
            self.layer_dirs.update(previous.layer_dirs)
            self.notes.extend(previous.notes)
        for logical_id in _deployment_order(resources):
            resource = resources[logical_id]
            condition = resource.get("Condition")
            if condition is not None and not self.resolver.condition(condition):
                LOG.debug("skipping %s: condition %s is false", logical_id, condition)
                continue
            kind = resource.get("Type", "")
            handler = _HANDLERS.get(kind)
            if handler is None:
                raise TemplateError(
                    f"{logical_id}: resource type {kind} is not supported by the local runtime "
                    f"(supported: {', '.join(sorted(_HANDLERS))})"
                )
            properties = self.resolver.resolve(resource.get("Properties") or {}, where=logical_id)
            old = previous.resources.get(logical_id) if previous is not None else None
            if old is not None and old.type != kind:
                raise TemplateError(f"{logical_id}: type changed from {old.type} to {kind}; replacing a resource is not supported locally")
            if old is not None and old.properties == properties:
                self.resolver.deployed[logical_id] = old  # unchanged: CloudFormation leaves it alone
                continue
            try:
                if old is None:
                    physical_id, attributes = handler(self, logical_id, properties)
                else:
                    physical_id, attributes = self.update(old, properties)
            except TemplateError:
                raise
            except Exception as exc:
                verb = "creating" if old is None else "updating"
                raise TemplateError(f"{logical_id} ({kind}): {verb} it failed: {exc}") from exc
            self.resolver.deployed[logical_id] = DeployedResource(logical_id, kind, physical_id, attributes, properties)
        if previous is not None:
            gone = [previous.resources[r] for r in previous.resources if r not in self.resolver.deployed]
            for old in [*self.replaced, *gone]:
                self.remove(previous, old)
        outputs: dict[str, Any] = {}
        for name, output in (self.template.get("Outputs") or {}).items():
            condition = output.get("Condition")
            if condition is not None and not self.resolver.condition(condition):
                continue
            outputs[name] = self.resolver.resolve(output.get("Value"), where=f"Outputs.{name}")
        return Stack(
            name=self.stack_name,
            region=self.region,
            account_id=self.account_id,
            template_path=self.path,
            parameters=self.parameters,
            resources=dict(self.resolver.deployed),
            outputs=outputs,
            functions=self.functions,
            notes=self.notes,
            cfn_template=copy.deepcopy(dict(self.template)),
            stack_id=str(self.resolver.pseudo["AWS::StackId"]),
            layer_dirs=dict(self.layer_dirs),
        )

    # ---------------------------------------------------------------- updates
    def update(self, old: DeployedResource, properties: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Apply changed properties to a deployed resource as a stack update does."""
        changed = sorted(k for k in set(old.properties) | set(properties) if old.properties.get(k) != properties.get(k))
        updater = _UPDATERS.get(old.type)
        if updater is None:
            raise TemplateError(
                f"{old.logical_id} ({old.type}): changed {', '.join(changed)}; updating this resource type is not "
                f"supported locally (supported: {', '.join(sorted(_UPDATERS))})"
            )
        LOG.info("updating %s (%s): %s", old.logical_id, old.type, ", ".join(changed))
        return updater(self, old, properties, set(changed))

    def remove(self, previous: Stack, old: DeployedResource) -> None:
        """A resource the new template no longer has: kept with DeletionPolicy Retain, else deleted."""
        declared = (previous.cfn_template.get("Resources") or {}).get(old.logical_id) or {}
        if declared.get("DeletionPolicy") == "Retain":
            self.notes.append(f"{old.logical_id}: removed from the template, retained (DeletionPolicy: Retain)")
            return
        remover = _REMOVERS.get(old.type)
        if remover is None:
            raise TemplateError(
                f"{old.logical_id} ({old.type}): removed from the template; deleting this resource type is not supported locally"
            )
        try:
            remover(self, old)
        except ClientError as exc:  # CloudFormation's cleanup phase: a failed delete doesn't fail the update
            self.notes.append(f"{old.logical_id}: deleting the old {old.type} {old.physical_id} failed: {exc}")
            LOG.warning("%s", self.notes[-1])
        if old.logical_id not in self.resolver.deployed:
            self.functions.pop(old.logical_id, None)

    # ---------------------------------------------------------------- helpers
    def name(self, logical_id: str, max_length: int, *, lower: bool = False, prefix: str | None = None) -> str:
        """A CloudFormation-style generated name: <stack>-<LogicalId>-<RANDOM> (``prefix``
        replaces the stack name; "" leaves it out, as CloudFormation does for state machines)."""
        alphabet = string.ascii_lowercase + string.digits if lower else string.ascii_uppercase + string.digits
        suffix = "".join(self.rng.choice(alphabet) for _ in range(12))
        prefix = self.stack_name if prefix is None else prefix
        head = f"{prefix}-{logical_id}" if prefix else logical_id
        head = head[: max_length - len(suffix) - 1]
        generated = f"{head}-{suffix}"
        return generated.lower() if lower else generated

    def unused(
        self, logical_id: str, properties: Mapping[str, Any], used: set[str], *, harmless: frozenset[str] | set[str] = frozenset()
    ) -> None:
        for key in sorted(set(properties) - used - harmless):
            note = f"{logical_id}: property {key} is not applied locally"
            LOG.info(note)
            self.notes.append(note)

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return f"arn:{self.partition}:{service}:{self.region if region else ''}:{self.account_id if account else ''}:{resource}"

    def local_path(self, logical_id: str, location: Any) -> Path | None:
        if isinstance(location, dict):
            bucket = location.get("S3Bucket", location.get("Bucket"))
            key = str(location.get("S3Key", location.get("Key"))).split("/", 1)[0]
            if bucket == LOCAL_ARTIFACT_BUCKET:
                if key not in self.local_paths:
                    raise TemplateError(f"{logical_id}: unknown local artifact {key!r}")
                return self.local_paths[key]
        return None


# ---------------------------------------------------------------------------- handlers
def _s3_bucket(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    s3 = d.client("s3")
    name = p.get("BucketName") or d.name(logical_id, 63, lower=True)
    if d.region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": d.region})
    if "VersioningConfiguration" in p:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]})
    if "BucketEncryption" in p:
        rules = []
        for rule in p["BucketEncryption"].get("ServerSideEncryptionConfiguration", []):
            api_rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": rule.get("ServerSideEncryptionByDefault", {})}
            if "BucketKeyEnabled" in rule:
                api_rule["BucketKeyEnabled"] = bool(rule["BucketKeyEnabled"])
            rules.append(api_rule)
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in p:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration={k: bool(v) for k, v in p["PublicAccessBlockConfiguration"].items()}
        )
    if "OwnershipControls" in p:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls={"Rules": p["OwnershipControls"]["Rules"]})
    if "NotificationConfiguration" in p:
        notification = dict(p["NotificationConfiguration"])
        config: dict[str, Any] = {}
        bridge = notification.pop("EventBridgeConfiguration", None)
        if bridge is not None and str(bridge.get("EventBridgeEnabled", True)).lower() == "true":
            config["EventBridgeConfiguration"] = {}  # moto then sends S3 events to EventBridge
        for key in notification:
            raise TemplateError(f"{logical_id}: NotificationConfiguration.{key} is not supported locally (EventBridge is)")
        s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=config)
    if "Tags" in p:
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in _tags_dict(p["Tags"]).items()]})
    if "LifecycleConfiguration" in p:
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={
            "Rules": [_lifecycle_rule(logical_id, rule) for rule in p["LifecycleConfiguration"].get("Rules", [])]
        })
    d.unused(
        logical_id,
        p,
        {"BucketName", "VersioningConfiguration", "BucketEncryption", "PublicAccessBlockConfiguration", "OwnershipControls", "NotificationConfiguration", "Tags", "LifecycleConfiguration"},
    )
    return name, {
        "Arn": f"arn:{d.partition}:s3:::{name}",
        "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": f"{name}.s3.{d.region}.amazonaws.com",
        "DualStackDomainName": f"{name}.s3.dualstack.{d.region}.amazonaws.com",
        "WebsiteURL": f"http://{name}.s3-website-{d.region}.amazonaws.com",
    }


def _lifecycle_rule(logical_id: str, rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule (AWS::S3::Bucket Rule) as PutBucketLifecycleConfiguration
    takes it: the prefix rule's filter, day-count expirations. Expiry itself is not run locally
    (objects live minutes here); the configuration is stored and readable."""
    api: dict[str, Any] = {"ID": rule.get("Id", "rule"), "Status": rule["Status"],
                           "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        api["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])}
    unknown = set(rule) - {"Id", "Status", "Prefix", "ExpirationInDays", "NoncurrentVersionExpiration"}
    if unknown:
        raise TemplateError(f"{logical_id}: lifecycle rule properties not supported locally: {', '.join(sorted(unknown))}")
    return api


def _s3_bucket_policy(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    d.client("s3").put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(p["PolicyDocument"]))
    return f"{d.stack_name}-{logical_id}", {}


def _dynamodb_table(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    dynamodb = d.client("dynamodb")
    name = p.get("TableName") or d.name(logical_id, 255)
    args: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": p["AttributeDefinitions"],
        "KeySchema": p["KeySchema"],
        "BillingMode": p.get("BillingMode", "PROVISIONED"),
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput", "TableClass"):
        if key in p:
            args[key] = p[key]
    if "StreamSpecification" in p:
        args["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": p["StreamSpecification"]["StreamViewType"]}
    if "SSESpecification" in p:
        sse = p["SSESpecification"]
        args["SSESpecification"] = {"Enabled": str(sse.get("SSEEnabled", False)).lower() == "true"}
        for src, dst in (("SSEType", "SSEType"), ("KMSMasterKeyId", "KMSMasterKeyId")):
            if src in sse:
                args["SSESpecification"][dst] = sse[src]
    if "Tags" in p:
        args["Tags"] = [{"Key": k, "Value": v} for k, v in _tags_dict(p["Tags"]).items()]
    if "DeletionProtectionEnabled" in p:
        args["DeletionProtectionEnabled"] = str(p["DeletionProtectionEnabled"]).lower() == "true"
    table = dynamodb.create_table(**args)["TableDescription"]
    if "TimeToLiveSpecification" in p:
        ttl = p["TimeToLiveSpecification"]
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": str(ttl.get("Enabled")).lower() == "true", "AttributeName": ttl["AttributeName"]}
        )
    if "PointInTimeRecoverySpecification" in p:
        enabled = str(p["PointInTimeRecoverySpecification"].get("PointInTimeRecoveryEnabled")).lower() == "true"
        dynamodb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled})
    d.unused(logical_id, p, set(args) | {"TimeToLiveSpecification", "PointInTimeRecoverySpecification"})
    attributes = {"Arn": table["TableArn"]}
    if table.get("LatestStreamArn"):
        attributes["StreamArn"] = table["LatestStreamArn"]
    return name, attributes


def _sns_topic(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    sns = d.client("sns")
    fifo = str(p.get("FifoTopic", False)).lower() == "true"
    name = p.get("TopicName") or (d.name(logical_id, 251) + (".fifo" if fifo else ""))
    attributes: dict[str, str] = {key: str(p[key]) for key in ("DisplayName", "KmsMasterKeyId", "ContentBasedDeduplication", "SignatureVersion", "TracingConfig") if key in p}
    if fifo:
        attributes["FifoTopic"] = "true"
    args: dict[str, Any] = {"Name": name, "Attributes": attributes}
    if "Tags" in p:
        args["Tags"] = [{"Key": k, "Value": v} for k, v in _tags_dict(p["Tags"]).items()]
    arn = sns.create_topic(**args)["TopicArn"]
    for subscription in p.get("Subscription", []):
        sns.subscribe(TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"])
    d.unused(logical_id, p, {"TopicName", "FifoTopic", "Tags", "Subscription"} | set(attributes))
    return arn, {"TopicArn": arn, "TopicName": name}


def _logs_log_group(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    logs = d.client("logs")
    name = p.get("LogGroupName") or d.name(logical_id, 512)
    logs.create_log_group(logGroupName=name)
    if "RetentionInDays" in p:
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
    d.unused(logical_id, p, {"LogGroupName", "RetentionInDays"}, harmless={"Tags"})
    return name, {"Arn": d.arn("logs", f"log-group:{name}:*")}


def _iam_role(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    iam = d.client("iam")
    name = p.get("RoleName") or d.name(logical_id, 64)
    args: dict[str, Any] = {"RoleName": name, "AssumeRolePolicyDocument": json.dumps(p["AssumeRolePolicyDocument"])}
    for key in ("Path", "Description", "PermissionsBoundary"):
        if key in p:
            args[key] = p[key]
    if "MaxSessionDuration" in p:
        args["MaxSessionDuration"] = int(p["MaxSessionDuration"])
    if "Tags" in p:
        args["Tags"] = [{"Key": k, "Value": v} for k, v in _tags_dict(p["Tags"]).items()]
    role = iam.create_role(**args)["Role"]
    for policy in p.get("Policies", []):
        # SAM policy templates emit documents without "Version"; IAM defaults it, moto rejects it.
        document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    for policy_arn in p.get("ManagedPolicyArns", []):
        try:
            iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
        except iam.exceptions.NoSuchEntityException:
            if ":iam::aws:policy/" not in policy_arn:
                raise TemplateError(f"{logical_id}: managed policy {policy_arn} does not exist") from None
            try:
                iam_enforcement.attach_aws_managed(role["Arn"], policy_arn)
            except KeyError as exc:
                raise TemplateError(f"{logical_id}: {exc.args[0]}") from None
    d.unused(logical_id, p, set(args) | {"Policies", "ManagedPolicyArns"})
    return name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}


def _iam_managed_policy(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Ref is the policy ARN (AWS::IAM::ManagedPolicy, CloudFormation User Guide)."""
    iam = d.client("iam")
    name = p.get("ManagedPolicyName") or d.name(logical_id, 128)
    document = {"Version": "2012-10-17", **p["PolicyDocument"]}
    args: dict[str, Any] = {"PolicyName": name, "PolicyDocument": json.dumps(document)}
    for key in ("Path", "Description"):
        if key in p:
            args[key] = p[key]
    arn = iam.create_policy(**args)["Policy"]["Arn"]
    for role in p.get("Roles", []):
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    for user in p.get("Users", []):
        iam.attach_user_policy(UserName=user, PolicyArn=arn)
    for group in p.get("Groups", []):
        iam.attach_group_policy(GroupName=group, PolicyArn=arn)
    d.unused(logical_id, p, {"ManagedPolicyName", "PolicyDocument", "Path", "Description", "Roles", "Users", "Groups"})
    return arn, {"PolicyArn": arn}


def _lambda_layer(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    content_dir = d.local_path(logical_id, p.get("Content"))
    if content_dir is None:
        raise TemplateError(f"{logical_id}: layer content must be a local path in the template (got {p.get('Content')!r})")
    label = f"{content_dir} ({content_digest(content_dir)})"
    args: dict[str, Any] = {"LayerName": p.get("LayerName") or logical_id, "Content": {"ZipFile": _tiny_zip(label)}}
    for key in ("Description", "CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
        if key in p:
            args[key] = p[key]
    arn = d.client("lambda").publish_layer_version(**args)["LayerVersionArn"]
    d.layer_dirs[arn] = content_dir
    if d.runtime is not None:
        d.runtime.register_layer(arn, content_dir)
    d.unused(logical_id, p, {"LayerName", "Content"} | set(args))
    return arn, {"LayerVersionArn": arn}


def _lambda_function(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    code_dir = d.local_path(logical_id, p.get("Code"))
    if code_dir is None and not (isinstance(p.get("Code"), dict) and "ZipFile" in p["Code"]):
        raise TemplateError(f"{logical_id}: function code must be a local path in the template (got {p.get('Code')!r})")
    name = p.get("FunctionName") or d.name(logical_id, 64)
    environment = {str(k): str(v) for k, v in ((p.get("Environment") or {}).get("Variables") or {}).items()}
    if code_dir is not None:
        code: dict[str, Any] = {"ZipFile": _tiny_zip(f"{code_dir} ({content_digest(code_dir)})")}
    else:
        code = {"ZipFile": _inline_zip(str(p["Code"]["ZipFile"]), str(p.get("Handler", "index.handler")))}
    args: dict[str, Any] = {
        "FunctionName": name,
        "Role": p["Role"],
        "Code": code,
        "Runtime": p.get("Runtime", "python3.12"),
        "Handler": p.get("Handler", "app.lambda_handler"),
        "Timeout": int(p.get("Timeout", 3)),
        "MemorySize": int(p.get("MemorySize", 128)),
        "Environment": {"Variables": environment},
    }
    for key in ("Description", "TracingConfig", "Architectures", "Layers", "EphemeralStorage", "DeadLetterConfig", "LoggingConfig", "PackageType"):
        if key in p:
            args[key] = p[key]
    if "KmsKeyArn" in p:
        args["KMSKeyArn"] = p["KmsKeyArn"]
    if "Tags" in p:
        args["Tags"] = _tags_dict(p["Tags"])
    created = d.client("lambda").create_function(**args)
    if "ReservedConcurrentExecutions" in p:
        d.client("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=int(p["ReservedConcurrentExecutions"]))
    if d.runtime is not None and code_dir is not None:
        d.runtime.register_function(
            account_id=d.account_id,
            region=d.region,
            function_name=name,
            code=FunctionCode(code_dir=code_dir, placeholder_sha256=created["CodeSha256"]),
        )
    if d.runtime is not None and "DeadLetterConfig" in p:
        # moto keeps no DeadLetterConfig: the runtime delivers failed async events itself.
        try:
            d.runtime.set_dead_letter_target(
                account_id=d.account_id,
                region=d.region,
                function_name=name,
                target_arn=p["DeadLetterConfig"].get("TargetArn"),
            )
        except ValueError as exc:
            raise TemplateError(f"{logical_id}: DeadLetterConfig: {exc}") from exc
    d.functions[logical_id] = FunctionSpec(
        logical_id=logical_id,
        function_name=name,
        arn=created["FunctionArn"],
        code_dir=code_dir,
        handler=args["Handler"],
        runtime=args["Runtime"],
        layer_dirs=tuple(d.layer_dirs[arn] for arn in args.get("Layers", []) if arn in d.layer_dirs),
        environment=environment,
        timeout=args["Timeout"],
        memory_size=args["MemorySize"],
    )
    d.unused(logical_id, p, set(args) | {"Code", "KmsKeyArn", "ReservedConcurrentExecutions"})
    return name, {"Arn": created["FunctionArn"]}


def _inline_zip(source: str, handler: str) -> bytes:
    module = handler.rpartition(".")[0] or "index"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{module.replace('.', '/')}.py", source)
    return buffer.getvalue()


def _lambda_permission(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    statement_id = d.name(logical_id, 100)
    args = {"FunctionName": p["FunctionName"], "StatementId": statement_id, "Action": p["Action"], "Principal": p["Principal"]}
    for key in ("SourceArn", "SourceAccount", "EventSourceToken", "PrincipalOrgID", "FunctionUrlAuthType"):
        if key in p:
            args[key] = p[key]
    d.client("lambda").add_permission(**args)
    d.unused(logical_id, p, set(args))
    return statement_id, {}


def _lambda_version(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    args = {"FunctionName": p["FunctionName"]}
    if "Description" in p:
        args["Description"] = p["Description"]
    published = d.client("lambda").publish_version(**args)
    d.unused(logical_id, p, set(args), harmless={"CodeSha256", "ProvisionedConcurrencyConfig"})
    return published["FunctionArn"], {"Version": published["Version"], "FunctionArn": published["FunctionArn"].rsplit(":", 1)[0]}


def _lambda_alias(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {"FunctionName": p["FunctionName"], "Name": p["Name"], "FunctionVersion": str(p["FunctionVersion"])}
    if "Description" in p:
        args["Description"] = p["Description"]
    if "RoutingConfig" in p:
        weights = p["RoutingConfig"].get("AdditionalVersionWeights", [])
        args["RoutingConfig"] = {"AdditionalVersionWeights": {str(w["FunctionVersion"]): float(w["FunctionWeight"]) for w in weights}}
    alias = d.client("lambda").create_alias(**args)
    d.unused(logical_id, p, set(args), harmless={"ProvisionedConcurrencyConfig"})
    return alias["AliasArn"], {"AliasArn": alias["AliasArn"]}


def _events_rule(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    events = d.client("events")
    name = p.get("Name") or d.name(logical_id, 64)
    args: dict[str, Any] = {"Name": name, "State": p.get("State", "ENABLED")}
    if "EventPattern" in p:
        pattern = p["EventPattern"]
        args["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    for key in ("ScheduleExpression", "Description", "RoleArn", "EventBusName"):
        if key in p:
            args[key] = p[key]
    arn = events.put_rule(**args)["RuleArn"]
    targets = []
    for target in p.get("Targets", []):
        api_target = {k: v for k, v in target.items()}
        if "RetryPolicy" in api_target:
            api_target["RetryPolicy"] = {k: int(v) for k, v in api_target["RetryPolicy"].items()}
        targets.append(api_target)
    if targets:
        kwargs: dict[str, Any] = {"Rule": name, "Targets": targets}
        if "EventBusName" in p:
            kwargs["EventBusName"] = p["EventBusName"]
        failed = events.put_targets(**kwargs).get("FailedEntries") or []
        if failed:
            raise TemplateError(f"{logical_id}: put_targets failed: {failed}")
    d.unused(logical_id, p, set(args) | {"Targets"})
    bus = p.get("EventBusName")
    physical_id = name if not bus or bus == "default" else f"{bus.rsplit('/', 1)[-1]}|{name}"
    return physical_id, {"Arn": arn}


_SCHEDULE_TARGET_KEYS = ("Arn", "RoleArn", "Input", "RetryPolicy", "DeadLetterConfig")


def _scheduler_schedule(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """AWS::Scheduler::Schedule: stored in moto's scheduler and run by ``scheduler.ScheduleRunner``
    on the runtime's clock. What CreateSchedule refuses (expression, time zone, window, retry
    policy, dead-letter queue ARN) is refused here, by name."""
    from modelgate_emulator.scheduler import check_schedule

    try:
        check_schedule(p)
    except ValueError as exc:
        raise TemplateError(f"{logical_id}: {exc}") from None
    name = p.get("Name") or d.name(logical_id, 64)
    target = {k: v for k, v in dict(p["Target"]).items() if k in _SCHEDULE_TARGET_KEYS}
    if "RetryPolicy" in target:
        target["RetryPolicy"] = {k: int(v) for k, v in target["RetryPolicy"].items()}
    args: dict[str, Any] = {
        "Name": name, "ScheduleExpression": p["ScheduleExpression"], "Target": target,
        "FlexibleTimeWindow": p.get("FlexibleTimeWindow") or {"Mode": "OFF"},
    }
    for key in ("GroupName", "Description", "State", "StartDate", "EndDate", "ScheduleExpressionTimezone"):
        if key in p:
            args[key] = p[key]
    arn = d.client("scheduler").create_schedule(**args)["ScheduleArn"]
    d.unused(logical_id, p, set(args) | {"Target"})
    return name, {"Arn": arn}


def _update_schedule(d: _Deployer, old: DeployedResource, p: dict[str, Any], changed: set[str]) -> tuple[str, dict[str, Any]]:
    _refuse_replacement(old, changed, {"Name", "GroupName"})
    d.client("scheduler").delete_schedule(Name=old.physical_id, **({"GroupName": p["GroupName"]} if "GroupName" in p else {}))
    return _scheduler_schedule(d, old.logical_id, {**p, "Name": old.physical_id})


def _definition(d: _Deployer, logical_id: str, p: dict[str, Any]) -> str:
    """The state machine's definition with its DefinitionSubstitutions applied."""
    if "DefinitionS3Location" in p:
        source = d.local_path(logical_id, p["DefinitionS3Location"])
        if source is None:
            raise TemplateError(f"{logical_id}: DefinitionS3Location must be a local file in the template")
        definition = source.read_text(encoding="utf-8")
    elif "DefinitionString" in p:
        definition = str(p["DefinitionString"])
    elif "Definition" in p:
        definition = json.dumps(p["Definition"])
    else:
        raise TemplateError(f"{logical_id}: state machine has no definition")
    substitutions = {str(k): v for k, v in (p.get("DefinitionSubstitutions") or {}).items()}
    for key, value in substitutions.items():
        definition = definition.replace("${" + key + "}", str(value).lower() if isinstance(value, bool) else str(value))
    # A placeholder left over is a deploy bug (an ARN missing from the substitutions).
    leftover = sorted(set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", definition))) if substitutions else []
    if leftover:
        raise TemplateError(f"{logical_id}: DefinitionSubstitutions has no value for {', '.join(leftover)}")
    try:
        json.loads(definition)
    except ValueError as exc:
        raise TemplateError(f"{logical_id}: definition is not valid JSON after substitution: {exc}") from exc
    return definition


def _state_machine(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    definition = _definition(d, logical_id, p)
    name = p.get("StateMachineName") or d.name(logical_id, 80, prefix="")
    args: dict[str, Any] = {"name": name, "definition": definition, "roleArn": p["RoleArn"], "type": p.get("StateMachineType", "STANDARD")}
    if "LoggingConfiguration" in p:
        logging_config = p["LoggingConfiguration"]
        args["loggingConfiguration"] = {
            "level": logging_config.get("Level", "OFF"),
            "includeExecutionData": str(logging_config.get("IncludeExecutionData", False)).lower() == "true",
            "destinations": [
                {"cloudWatchLogsLogGroup": {"logGroupArn": dest["CloudWatchLogsLogGroup"]["LogGroupArn"]}}
                for dest in logging_config.get("Destinations", [])
            ],
        }
    if "TracingConfiguration" in p:
        args["tracingConfiguration"] = {"enabled": str(p["TracingConfiguration"].get("Enabled", False)).lower() == "true"}
    if "Tags" in p:
        args["tags"] = [{"key": k, "value": v} for k, v in _tags_dict(p["Tags"]).items()]
    # The stepfunctions API (not moto's CloudFormation) puts it in the executing backend.
    arn = d.client("stepfunctions").create_state_machine(**args)["stateMachineArn"]
    d.unused(
        logical_id,
        p,
        {"DefinitionS3Location", "DefinitionString", "Definition", "DefinitionSubstitutions", "StateMachineName", "RoleArn", "StateMachineType", "LoggingConfiguration", "TracingConfiguration", "Tags"},
    )
    return arn, {"Arn": arn, "Name": name, "StateMachineRevisionId": "INITIAL"}


_ALARM_INT = {"Period", "EvaluationPeriods", "DatapointsToAlarm"}
_ALARM_KEYS = {
    "AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions", "InsufficientDataActions", "MetricName",
    "Namespace", "Statistic", "ExtendedStatistic", "Dimensions", "Period", "Unit", "EvaluationPeriods",
    "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData", "EvaluateLowSampleCountPercentile",
    "Metrics", "ThresholdMetricId",
}  # fmt: skip


def _cloudwatch_alarm(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("AlarmName") or d.name(logical_id, 255)
    args: dict[str, Any] = {"AlarmName": name}
    for key in _ALARM_KEYS & set(p):
        value = p[key]
        if key in _ALARM_INT:
            value = int(value)
        elif key == "Threshold":
            value = float(value)
        elif key == "ActionsEnabled":
            value = str(value).lower() == "true"
        args[key] = value
    if "Tags" in p:
        args["Tags"] = [{"Key": k, "Value": v} for k, v in _tags_dict(p["Tags"]).items()]
    d.client("cloudwatch").put_metric_alarm(**args)
    d.unused(logical_id, p, set(args))
    return name, {"Arn": d.arn("cloudwatch", f"alarm:{name}")}


def _ssm_parameter(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("Name") or d.name(logical_id, 1011, prefix="CFN")
    args: dict[str, Any] = {"Name": name, "Type": p["Type"], "Value": str(p["Value"]), "Overwrite": False}
    for key in ("Description", "AllowedPattern", "Tier", "DataType", "Policies"):
        if key in p:
            args[key] = p[key]
    if "Tags" in p:
        args["Tags"] = [{"Key": k, "Value": v} for k, v in _tags_dict(p["Tags"]).items()]
    d.client("ssm").put_parameter(**args)
    d.unused(logical_id, p, set(args))
    return name, {"Type": p["Type"], "Value": str(p["Value"])}


def _secretsmanager_secret(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Ref is the secret's ARN; GenerateSecretString is generated by Secrets Manager (moto) itself."""
    sm = d.client("secretsmanager")
    name = p.get("Name") or d.name(logical_id, 512, prefix="")
    args: dict[str, Any] = {"Name": name}
    for key in ("Description", "KmsKeyId"):
        if key in p:
            args[key] = p[key]
    if "SecretString" in p:
        args["SecretString"] = str(p["SecretString"])
    elif "GenerateSecretString" in p:
        g = dict(p["GenerateSecretString"])
        options = {k: g[k] for k in ("PasswordLength", "ExcludeCharacters", "ExcludeNumbers", "ExcludePunctuation",
                                     "ExcludeUppercase", "ExcludeLowercase", "IncludeSpace", "RequireEachIncludedType") if k in g}
        password = sm.get_random_password(**options)["RandomPassword"]
        if "SecretStringTemplate" in g:
            document = json.loads(g["SecretStringTemplate"])
            document[g["GenerateStringKey"]] = password
            password = json.dumps(document)
        args["SecretString"] = password
    if "Tags" in p:
        args["Tags"] = [{"Key": k, "Value": v} for k, v in _tags_dict(p["Tags"]).items()]
    arn = sm.create_secret(**args)["ARN"]
    d.unused(logical_id, p, set(args) | {"GenerateSecretString"})
    return arn, {"Id": arn}


def _kms_key(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """AWS::KMS::Key: Ref is the key id, Fn::GetAtt Arn and KeyId ("AWS::KMS::Key", AWS
    CloudFormation User Guide, "Return values"). KeySpec and KeyUsage as given (an
    asymmetric signing key: ECC_NIST_P256 / SIGN_VERIFY); the KeyPolicy is stored (moto keeps
    it; the embedded IAM does not evaluate key policies, see iam.py)."""
    kms = d.client("kms")
    args: dict[str, Any] = {}
    for key in ("Description", "KeySpec", "KeyUsage", "Origin", "MultiRegion"):
        if key in p:
            args[key] = p[key]
    if "KeyPolicy" in p:
        policy = p["KeyPolicy"]
        args["Policy"] = policy if isinstance(policy, str) else json.dumps(policy)
    if "Tags" in p:
        args["Tags"] = [{"TagKey": k, "TagValue": v} for k, v in _tags_dict(p["Tags"]).items()]
    metadata = kms.create_key(**args)["KeyMetadata"]
    d.unused(logical_id, p, {*args, "KeyPolicy", "EnableKeyRotation", "PendingWindowInDays"})
    return metadata["KeyId"], {"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]}


def _lambda_url(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {"FunctionName": p["TargetFunctionArn"], "AuthType": p["AuthType"]}
    if "Qualifier" in p:
        args["Qualifier"] = p["Qualifier"]
    for key in ("Cors", "InvokeMode"):
        if key in p:
            args[key] = p[key]
    created = d.client("lambda").create_function_url_config(**args)
    d.unused(logical_id, p, {"TargetFunctionArn", "AuthType", "Qualifier", "Cors", "InvokeMode"})
    return created["FunctionArn"], {"FunctionArn": created["FunctionArn"], "FunctionUrl": created["FunctionUrl"]}


# SQS queue attributes CloudFormation takes as properties (AWS::SQS::Queue, CloudFormation
# User Guide); the API takes them as strings, policies as JSON.
_SQS_ATTRIBUTES = (
    "DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled", "FifoQueue",
    "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit", "RedrivePolicy", "RedriveAllowPolicy",
)  # fmt: skip


def _sqs_queue(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Ref is the queue URL; GetAtt gives Arn, QueueName and QueueUrl (as CloudFormation does)."""
    fifo = str(p.get("FifoQueue", False)).lower() == "true"
    name = p.get("QueueName") or (d.name(logical_id, 75 if fifo else 80) + (".fifo" if fifo else ""))
    if fifo != name.endswith(".fifo"):
        raise TemplateError(
            f"{logical_id}: a FIFO queue's name ends in .fifo and only a FIFO queue's does (got {name!r})"
        )
    attributes: dict[str, str] = {}
    for key in _SQS_ATTRIBUTES:
        if key in p:
            value = p[key]
            if isinstance(value, dict):
                attributes[key] = json.dumps(value)
            else:
                attributes[key] = str(value).lower() if isinstance(value, bool) else str(value)
    args: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if "Tags" in p:
        args["tags"] = _tags_dict(p["Tags"])
    sqs = d.client("sqs")
    url = sqs.create_queue(**args)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    d.unused(logical_id, p, {"QueueName", "Tags", *attributes})
    return url, {"Arn": arn, "QueueName": name, "QueueUrl": url}


def _sqs_queue_policy(d: _Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The same policy document on every queue listed (by URL, which is a queue's Ref)."""
    queues = p.get("Queues") or []
    if not queues:
        raise TemplateError(f"{logical_id}: Queues is empty (AWS::SQS::QueuePolicy needs at least one queue URL)")
    document = json.dumps(p["PolicyDocument"])
    for url in queues:
        d.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": document})
    d.unused(logical_id, p, {"Queues", "PolicyDocument"})
    return f"{d.stack_name}-{logical_id}", {"Id": f"{d.stack_name}-{logical_id}"}


# ---------------------------------------------------------------------------- stack updates
# What a stack update does to a changed resource, per type, following each property's
# "Update requires" in the CloudFormation resource reference
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-template-resource-type-ref.html):
# "No interruption" properties are updated in place; a "Replacement" property creates a new
# resource (and deletes the old one unless its DeletionPolicy is Retain). Replacements of
# named resources (a changed FunctionName, AlarmName, parameter Name...) are refused locally.
_Updater = Callable[["_Deployer", DeployedResource, dict[str, Any], set[str]], tuple[str, dict[str, Any]]]
_FUNCTION_CONFIGURATION = {
    "Role", "Handler", "Runtime", "Timeout", "MemorySize", "Environment", "Description", "TracingConfig", "Layers",
    "EphemeralStorage", "DeadLetterConfig", "LoggingConfig", "KmsKeyArn",
}  # fmt: skip


def _refuse_replacement(old: DeployedResource, changed: set[str], replacing: set[str]) -> None:
    if changed & replacing:
        raise TemplateError(
            f"{old.logical_id} ({old.type}): changing {', '.join(sorted(changed & replacing))} replaces the resource; "
            "replacing it is not supported locally"
        )


def _update_lambda_function(d: _Deployer, old: DeployedResource, p: dict[str, Any], changed: set[str]) -> tuple[str, dict[str, Any]]:
    """AWS::Lambda::Function: code and configuration are updated in place ("Update requires:
    No interruption"); $LATEST changes, published versions and aliases do not."""
    _refuse_replacement(old, changed, {"FunctionName", "PackageType"})
    lam = d.client("lambda")
    name = old.physical_id
    code_dir = d.local_path(old.logical_id, p.get("Code"))
    spec = d.functions[old.logical_id]
    if "Code" in changed:
        if code_dir is None:
            raise TemplateError(f"{old.logical_id}: function code must be a local path in the template (got {p.get('Code')!r})")
        updated = lam.update_function_code(FunctionName=name, ZipFile=_tiny_zip(f"{code_dir} ({content_digest(code_dir)})"))
        lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if d.runtime is not None:
            d.runtime.register_function(
                account_id=d.account_id,
                region=d.region,
                function_name=name,
                code=FunctionCode(code_dir=code_dir, placeholder_sha256=updated["CodeSha256"]),
            )
    environment = {str(k): str(v) for k, v in ((p.get("Environment") or {}).get("Variables") or {}).items()}
    if changed & _FUNCTION_CONFIGURATION:
        args: dict[str, Any] = {
            "FunctionName": name,
            "Role": p["Role"],
            "Runtime": p.get("Runtime", "python3.12"),
            "Handler": p.get("Handler", "app.lambda_handler"),
            "Timeout": int(p.get("Timeout", 3)),
            "MemorySize": int(p.get("MemorySize", 128)),
            "Environment": {"Variables": environment},
            "Description": p.get("Description", ""),
            "Layers": p.get("Layers", []),
        }
        for key in ("TracingConfig", "EphemeralStorage", "DeadLetterConfig", "LoggingConfig"):
            if key in p:
                args[key] = p[key]
        if "KmsKeyArn" in p:
            args["KMSKeyArn"] = p["KmsKeyArn"]
        lam.update_function_configuration(**args)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    if "ReservedConcurrentExecutions" in changed:
        if "ReservedConcurrentExecutions" in p:
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=int(p["ReservedConcurrentExecutions"]))
        else:
            lam.delete_function_concurrency(FunctionName=name)
    if "Tags" in changed:
        d.notes.append(f"{old.logical_id}: Tags changed; not applied locally")
    unhandled = changed - _FUNCTION_CONFIGURATION - {"Code", "ReservedConcurrentExecutions", "Tags"}
    if unhandled:
        raise TemplateError(f"{old.logical_id}: updating {', '.join(sorted(unhandled))} is not supported locally")
    d.functions[old.logical_id] = dataclasses.replace(
        spec,
        code_dir=code_dir if code_dir is not None else spec.code_dir,
        handler=p.get("Handler", "app.lambda_handler"),
        runtime=p.get("Runtime", "python3.12"),
        layer_dirs=tuple(d.layer_dirs[arn] for arn in p.get("Layers", []) if arn in d.layer_dirs),
        environment=environment,
        timeout=int(p.get("Timeout", 3)),
        memory_size=int(p.get("MemorySize", 128)),
    )
    return old.physical_id, old.attributes


def _replace_by_creating(handler: _Handler) -> _Updater:
    """Every property change replaces the resource (AWS::Lambda::Version, AWS::Lambda::LayerVersion:
    "Update requires: Replacement"): a new one is created; the old one is removed afterwards by
    the update's cleanup (:meth:`_Deployer.remove`), or kept with DeletionPolicy Retain."""

    def update(d: _Deployer, old: DeployedResource, p: dict[str, Any], changed: set[str]) -> tuple[str, dict[str, Any]]:
        d.replaced.append(old)
        return handler(d, old.logical_id, p)

    return update


def _update_lambda_alias(d: _Deployer, old: DeployedResource, p: dict[str, Any], changed: set[str]) -> tuple[str, dict[str, Any]]:
    """AWS::Lambda::Alias: FunctionVersion, RoutingConfig and Description update in place - which
    is how a stack update moves an alias (SAM's AutoPublishAlias does exactly this)."""
    _refuse_replacement(old, changed, {"FunctionName", "Name"})
    args: dict[str, Any] = {
        "FunctionName": p["FunctionName"],
        "Name": p["Name"],
        "FunctionVersion": str(p["FunctionVersion"]),
        "Description": p.get("Description", ""),
    }
    weights = (p.get("RoutingConfig") or {}).get("AdditionalVersionWeights", [])
    args["RoutingConfig"] = {"AdditionalVersionWeights": {str(w["FunctionVersion"]): float(w["FunctionWeight"]) for w in weights}}
    d.client("lambda").update_alias(**args)
    return old.physical_id, old.attributes


def _update_ssm_parameter(d: _Deployer, old: DeployedResource, p: dict[str, Any], changed: set[str]) -> tuple[str, dict[str, Any]]:
    _refuse_replacement(old, changed, {"Name"})
    args: dict[str, Any] = {"Name": old.physical_id, "Type": p["Type"], "Value": str(p["Value"]), "Overwrite": True}
    for key in ("Description", "AllowedPattern", "Tier", "DataType", "Policies"):
        if key in p:
            args[key] = p[key]
    d.client("ssm").put_parameter(**args)
    return old.physical_id, {"Type": p["Type"], "Value": str(p["Value"])}


def _update_cloudwatch_alarm(d: _Deployer, old: DeployedResource, p: dict[str, Any], changed: set[str]) -> tuple[str, dict[str, Any]]:
    _refuse_replacement(old, changed, {"AlarmName"})
    return _cloudwatch_alarm(d, old.logical_id, {**p, "AlarmName": old.physical_id})


def _update_state_machine(d: _Deployer, old: DeployedResource, p: dict[str, Any], changed: set[str]) -> tuple[str, dict[str, Any]]:
    _refuse_replacement(old, changed, {"StateMachineName", "StateMachineType"})
    definition = _definition(d, old.logical_id, p)
    args: dict[str, Any] = {"stateMachineArn": old.physical_id, "definition": definition, "roleArn": p["RoleArn"]}
    d.client("stepfunctions").update_state_machine(**args)
    for key in sorted(changed & {"LoggingConfiguration", "TracingConfiguration", "Tags"}):
        d.notes.append(f"{old.logical_id}: {key} changed; not applied locally")
    return old.physical_id, old.attributes


def _update_iam_role(d: _Deployer, old: DeployedResource, p: dict[str, Any], changed: set[str]) -> tuple[str, dict[str, Any]]:
    _refuse_replacement(old, changed, {"RoleName", "Path"})
    iam = d.client("iam")
    name = old.physical_id
    if "AssumeRolePolicyDocument" in changed:
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(p["AssumeRolePolicyDocument"]))
    if "Policies" in changed:
        wanted = {policy["PolicyName"]: policy["PolicyDocument"] for policy in p.get("Policies", [])}
        for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            if policy_name not in wanted:
                iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        for policy_name, document in wanted.items():
            iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps({"Version": "2012-10-17", **document}))
    if "ManagedPolicyArns" in changed:
        attached = {a["PolicyArn"] for a in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]}
        wanted_arns = set(p.get("ManagedPolicyArns", []))
        for arn in attached - wanted_arns:
            iam.detach_role_policy(RoleName=name, PolicyArn=arn)
        for arn in wanted_arns - attached:
            try:
                iam.attach_role_policy(RoleName=name, PolicyArn=arn)
            except iam.exceptions.NoSuchEntityException:
                d.notes.append(f"{old.logical_id}: managed policy {arn} unknown to moto, not attached (IAM is not enforced locally)")
    for key in sorted(changed - {"AssumeRolePolicyDocument", "Policies", "ManagedPolicyArns"}):
        d.notes.append(f"{old.logical_id}: {key} changed; not applied locally")
    return old.physical_id, old.attributes


def _remove_lambda_version(d: _Deployer, old: DeployedResource) -> None:
    function_name, _, version = old.physical_id.rpartition(":")
    d.client("lambda").delete_function(FunctionName=function_name, Qualifier=version)


def _remove_layer_version(d: _Deployer, old: DeployedResource) -> None:
    layer_arn, _, version = old.physical_id.rpartition(":")
    d.client("lambda").delete_layer_version(LayerName=layer_arn, VersionNumber=int(version))


def _remove_alarm(d: _Deployer, old: DeployedResource) -> None:
    d.client("cloudwatch").delete_alarms(AlarmNames=[old.physical_id])


def _remove_ssm_parameter(d: _Deployer, old: DeployedResource) -> None:
    d.client("ssm").delete_parameter(Name=old.physical_id)


_HANDLERS: dict[str, _Handler] = {
    "AWS::S3::Bucket": _s3_bucket,
    "AWS::S3::BucketPolicy": _s3_bucket_policy,
    "AWS::DynamoDB::Table": _dynamodb_table,
    "AWS::SNS::Topic": _sns_topic,
    "AWS::Logs::LogGroup": _logs_log_group,
    "AWS::IAM::Role": _iam_role,
    "AWS::IAM::ManagedPolicy": _iam_managed_policy,
    "AWS::Lambda::LayerVersion": _lambda_layer,
    "AWS::Lambda::Function": _lambda_function,
    "AWS::Lambda::Permission": _lambda_permission,
    "AWS::Lambda::Version": _lambda_version,
    "AWS::Lambda::Alias": _lambda_alias,
    "AWS::Events::Rule": _events_rule,
    "AWS::Scheduler::Schedule": _scheduler_schedule,
    "AWS::StepFunctions::StateMachine": _state_machine,
    "AWS::CloudWatch::Alarm": _cloudwatch_alarm,
    "AWS::SSM::Parameter": _ssm_parameter,
    "AWS::SecretsManager::Secret": _secretsmanager_secret,
    "AWS::KMS::Key": _kms_key,
    "AWS::Lambda::Url": _lambda_url,
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::SQS::QueuePolicy": _sqs_queue_policy,
}

_UPDATERS: dict[str, _Updater] = {
    "AWS::Lambda::Function": _update_lambda_function,
    "AWS::Lambda::Version": _replace_by_creating(_lambda_version),
    "AWS::Lambda::LayerVersion": _replace_by_creating(_lambda_layer),
    "AWS::Lambda::Alias": _update_lambda_alias,
    "AWS::SSM::Parameter": _update_ssm_parameter,
    "AWS::CloudWatch::Alarm": _update_cloudwatch_alarm,
    "AWS::StepFunctions::StateMachine": _update_state_machine,
    "AWS::IAM::Role": _update_iam_role,
    "AWS::Scheduler::Schedule": _update_schedule,
}
_REMOVERS: dict[str, Callable[[_Deployer, DeployedResource], None]] = {
    "AWS::Lambda::Version": _remove_lambda_version,
    "AWS::Lambda::LayerVersion": _remove_layer_version,
    "AWS::CloudWatch::Alarm": _remove_alarm,
    "AWS::SSM::Parameter": _remove_ssm_parameter,
}
