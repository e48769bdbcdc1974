"""Unit-test fixtures: moto in process, fake credentials, no network.

* ``ledger_table``: the ledger table as template.yaml declares it (``LedgerTable``'s key
  schema, attributes, indexes and billing mode), the one way unit tests get the table.
* ``world``: what the pipeline stages run against in their unit tests (test_stage_*.py):
  real boto3 clients on moto (S3, SSM, Lambda, CloudWatch, SNS -> SQS, Secrets Manager,
  Step Functions), the ledger, and one fake: task tokens (moto accepts any token
  silently, so SendTaskSuccess/Failure are recorded by ``FakeStepFunctions`` instead).
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cfn_flip import load_yaml
from moto import mock_aws

from modelgate.adapters import clients as aws
from modelgate.adapters.lambda_alias import alias_state
from modelgate.adapters.metrics import LAMBDA_NAMESPACE, version_dimensions
from modelgate.contract import ReleaseContext
from modelgate.ledger import Ledger
from modelgate.manifest import ArtifactRef, pin_environment, prompt_pin_key
from modelgate.pipeline.deps import Deps
from modelgate.policy import ReleasePolicy, ServiceConfig, managed_function_prefix
from modelgate.settings import ApprovalRequestSettings, IntakeSettings, PromoteSettings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
LEDGER_TABLE = "ledger"
# What CreateTable takes from an AWS::DynamoDB::Table; the rest (backups, encryption,
# retention) is deployment detail the tests have no use for.
TABLE_PROPERTIES = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
)


# ---------------------------------------------------------------------- the ledger table
def ledger_table_spec(template: Path = TEMPLATE) -> dict[str, Any]:
    """CreateTable's arguments (but the name) from template.yaml's LedgerTable."""
    return json.loads(_ledger_table_spec(template))  # a fresh copy: boto3 may not share it


@lru_cache(maxsize=4)
def _ledger_table_spec(template: Path) -> str:
    resources = load_yaml(template.read_text())["Resources"]
    resource = resources["LedgerTable"]
    assert resource["Type"] == "AWS::DynamoDB::Table", resource["Type"]
    properties = json.loads(json.dumps(resource["Properties"]))  # plain dicts, no OrderedDict
    spec = {key: properties[key] for key in TABLE_PROPERTIES if key in properties}
    _refuse_intrinsics(spec, "LedgerTable")
    return json.dumps(spec)


def _refuse_intrinsics(value: Any, where: str) -> None:
    """A !Ref or !Sub in the table's shape can't be resolved here: say so, don't guess."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" or key.startswith("Fn::"):
                raise ValueError(f"{where} uses {key}; the unit tests' ledger table can't resolve it")
            _refuse_intrinsics(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_intrinsics(item, f"{where}[{index}]")


@pytest.fixture
def aws_env(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        aws.reset_clients()
        yield
    aws.reset_clients()


@lru_cache(maxsize=1)
def session() -> boto3.session.Session:
    """One boto3 session for the whole run: moto answers its clients while a mock is active
    (mock_aws resets boto3's default session each time, and a new session parses botocore's
    models again: a third of a second per test)."""
    return boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def ledger_table(aws_env):
    """The ledger table, shaped as template.yaml's LedgerTable, named ``ledger``."""
    return session().resource("dynamodb").create_table(TableName=LEDGER_TABLE, **ledger_table_spec())


# ---------------------------------------------------------------------- the stages' world
STACK = "test"
SERVICE = "support-bot"
FUNCTION = f"{managed_function_prefix(STACK)}{SERVICE}"
BUCKET = "artefacts"
SERVICES_PREFIX = f"/modelgate/{STACK}/services/"
DATASET_KEY = f"datasets/{SERVICE}/dataset.jsonl"
COMMIT = "abc1234def0"
RELEASE = f"{SERVICE}-{COMMIT}-0123456789"
APPROVAL_BASE_URL = "https://approve.example.com/"
SIGNING_KEY = "s" * 40
MONITOR_FUNCTION = "test-monitor"  # Promote asks it for the baseline (asynchronous invoke)


class StageSettings(IntakeSettings, ApprovalRequestSettings, PromoteSettings):
    """Every setting any stage reads (each function's own model is a subset)."""


class FakeStepFunctions:
    """Step Functions in moto, but task tokens: moto accepts any token without a waiting
    task, so SendTaskSuccess/Failure are recorded here, and ``gone`` makes them answer
    like a task that already ended (TaskTimedOut, TaskDoesNotExist...)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.sent: list[tuple[str, dict]] = []
        self.gone: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def _send(self, name: str, kwargs: dict) -> dict:
        if self.gone:
            raise ClientError({"Error": {"Code": self.gone, "Message": "the task is gone"}}, name)
        self.sent.append((name, kwargs))
        return {}

    def send_task_success(self, **kwargs: Any) -> dict:
        return self._send("send_task_success", kwargs)

    def send_task_failure(self, **kwargs: Any) -> dict:
        return self._send("send_task_failure", kwargs)


def _handler_zip() -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return {'output': 'ok'}\n")
    return data.getvalue()


class World:
    """The AWS a stage sees in a unit test, and Given-helpers to arrange it."""

    def __init__(self, table: Any) -> None:
        self._clients: dict[str, Any] = {}
        self.sfn = FakeStepFunctions(session().client("stepfunctions"))
        self._clients["stepfunctions"] = self.sfn
        self.ledger = Ledger(table)

        self.client("s3").create_bucket(Bucket=BUCKET)
        self.client("s3").put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        topic = self.client("sns").create_topic(Name="approvals")["TopicArn"]
        sqs = self.client("sqs")
        self._inbox = sqs.create_queue(QueueName="approvers-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=self._inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.client("sns").subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"}
        )
        secret = self.client("secretsmanager").create_secret(Name="signing", SecretString=SIGNING_KEY)["ARN"]
        self.role = self.client("iam").create_role(
            RoleName="modelgate-test", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )["Role"]["Arn"]
        machine = self.sfn.create_state_machine(
            name="ReleasePipeline",
            definition=json.dumps({"StartAt": "Run", "States": {"Run": {"Type": "Pass", "End": True}}}),
            roleArn=self.role,
        )["stateMachineArn"]
        self.settings = StageSettings(
            LEDGER_TABLE=LEDGER_TABLE, ARTIFACT_BUCKET=BUCKET, SERVICES_PREFIX=SERVICES_PREFIX,
            APPROVAL_TOPIC_ARN=topic, STACK_NAME=STACK, STATE_MACHINE_ARN=machine,
            SIGNING_SECRET_ARN=secret, APPROVAL_BASE_URL=APPROVAL_BASE_URL, MONITOR_FUNCTION_NAME=MONITOR_FUNCTION,
        )

    # ------------------------------------------------------------------ clients, deps
    def client(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = session().client(name)
        return self._clients[name]

    def use(self, name: str, fake: Any) -> Any:
        """Make the stages' client ``name`` a fake (e.g. the service function's invokes)."""
        self._clients[name] = fake
        return fake

    @property
    def deps(self) -> Deps:
        """What the stages get (``world.deps.s3``, ``world.deps.lambda_``: the same clients)."""
        return Deps(self.settings, self.client, self.ledger)

    # ------------------------------------------------------------------ the service
    def register(self, policy: ReleasePolicy | None = None, **config: Any) -> ServiceConfig:
        """The service's registration (an SSM parameter), with ``policy``."""
        service = ServiceConfig(
            service=SERVICE, function_name=FUNCTION, dataset_key=DATASET_KEY, policy=policy or ReleasePolicy(), **config
        )
        self.client("ssm").put_parameter(
            Name=SERVICES_PREFIX + SERVICE, Type="String", Value=service.model_dump_json(), Overwrite=True
        )
        return service

    def service_function(self, *, live_serves_a_release: bool = True) -> str:
        """The service's function with version 1 behind its ``live`` alias; that version
        pins an earlier release unless ``live_serves_a_release`` is False (a first release)."""
        self.deps.lambda_.create_function(
            FunctionName=FUNCTION, Runtime="python3.12", Role=self.role, Handler="app.lambda_handler",
            Code={"ZipFile": _handler_zip()}, Environment={"Variables": {"MODEL_PROVIDER": "local"}},
        )
        version = self.publish("an-earlier-release") if live_serves_a_release else self._publish_plain()
        self.deps.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=version)
        return version

    def _publish_plain(self) -> str:
        return self.deps.lambda_.publish_version(FunctionName=FUNCTION, Description="deployed")["Version"]

    def publish(self, release_id: str) -> str:
        """A version of the service function pinning ``release_id`` (as PublishCandidate leaves it)."""
        ref = ArtifactRef(bucket=BUCKET, key=f"releases/{SERVICE}/{release_id}/model-config.json", version_id="v1")
        variables = {"MODEL_PROVIDER": "local", **pin_environment(ref, prompt_pin_key(SERVICE, release_id), "p1")}
        self.deps.lambda_.update_function_configuration(FunctionName=FUNCTION, Environment={"Variables": variables})
        return self.deps.lambda_.publish_version(FunctionName=FUNCTION, Description=release_id)["Version"]

    def canary(self, stable: str, candidate: str, weight: float = 0.1) -> None:
        self.deps.lambda_.update_alias(
            FunctionName=FUNCTION, Name="live", FunctionVersion=stable,
            RoutingConfig={"AdditionalVersionWeights": {candidate: weight}},
        )

    def alias(self) -> tuple[str, dict[str, float]]:
        """(the live alias's version, its additional weights)."""
        return alias_state(self.deps.lambda_, FUNCTION, "live")

    def versions(self) -> list[str]:
        return [v["Version"] for v in self.deps.lambda_.list_versions_by_function(FunctionName=FUNCTION)["Versions"]]

    def environment(self, version: str) -> dict[str, str]:
        config = self.deps.lambda_.get_function_configuration(FunctionName=FUNCTION, Qualifier=version)
        return config.get("Environment", {}).get("Variables", {})

    # ------------------------------------------------------------------ alarms, metrics
    def put_alarm(self, name: str, *, state: str | None = None, reason: str = "test") -> str:
        self.deps.cloudwatch.put_metric_alarm(
            AlarmName=name, Namespace=LAMBDA_NAMESPACE, MetricName="Errors", Statistic="Sum", Period=60,
            EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        if state:
            self.deps.cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)
        return name

    def alarm_names(self) -> list[str]:
        return [a["AlarmName"] for a in self.deps.cloudwatch.describe_alarms()["MetricAlarms"]]

    def lambda_traffic(self, version: str, *, invocations: int, errors: int = 0, at: datetime | None = None,
                       duration_ms: float = 40.0) -> None:
        """What Lambda reports for calls through the live alias that ran ``version``."""
        at = at or datetime.now(timezone.utc)
        dimensions = version_dimensions(FUNCTION, "live", version)
        self.deps.cloudwatch.put_metric_data(
            Namespace=LAMBDA_NAMESPACE,
            MetricData=[
                {"MetricName": "Invocations", "Dimensions": dimensions, "Timestamp": at, "Value": invocations, "Unit": "Count"},
                {"MetricName": "Errors", "Dimensions": dimensions, "Timestamp": at, "Value": errors, "Unit": "Count"},
                {"MetricName": "Duration", "Dimensions": dimensions, "Timestamp": at, "Value": duration_ms,
                 "Unit": "Milliseconds"},
            ],
        )

    # ------------------------------------------------------------------ releases
    def context(self, release_id: str = RELEASE, **fields: Any) -> ReleaseContext:
        """A release's context as the state machine carries it after validation."""
        commit = fields.pop("commit", COMMIT)
        values: dict[str, Any] = {
            "release_id": release_id,
            "service": SERVICE,
            "commit": commit,
            "branch": "main",
            "artifact": ArtifactRef(
                bucket=BUCKET, key=f"releases/{SERVICE}/{commit}/model-config.json", version_id="mv1"
            ),
            "policy": ReleasePolicy(),
            "function_name": FUNCTION,
            "alias": "live",
            "dataset_key": DATASET_KEY,
            "prompt_versions": {"prompts/system.txt": "pv1"},
        }
        values.update(fields)
        return ReleaseContext.model_validate(values)

    def mail(self) -> list[str]:
        """Every message the approval topic delivered so far (the approvers' inbox)."""
        return [m["Message"] for m in self.published()]

    def published(self) -> list[dict[str, Any]]:
        """Every message delivered so far: {"Message": body, "MessageAttributes": {name: {"Type", "Value"}}}."""
        delivered = []
        while True:
            messages = self.client("sqs").receive_message(
                QueueUrl=self._inbox, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return delivered
            for message in messages:
                attributes = {
                    name: {"Type": value["DataType"], "Value": value.get("StringValue")}
                    for name, value in (message.get("MessageAttributes") or {}).items()
                }
                delivered.append({"Message": message["Body"], "MessageAttributes": attributes})
                self.client("sqs").delete_message(QueueUrl=self._inbox, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def world(ledger_table) -> World:
    return World(ledger_table)
