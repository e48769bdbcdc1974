"""Deploying a template into moto from the template itself (modelgate_emulator.template)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from modelgate_emulator import LocalAWS, TemplateError
from modelgate_emulator.template import _Resolver, content_digest, translate


def resolver(**parameters: Any) -> _Resolver:
    template = {
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
        "Mappings": {"Sizes": {"dev": {"Memory": 256}}},
        "Resources": {},
    }
    pseudo = {"AWS::StackName": "s", "AWS::Region": "eu-west-1", "AWS::AccountId": "111122223333", "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
    return _Resolver(template, {"Stage": "dev", **parameters}, pseudo)


# ------------------------------------------------------------------ intrinsics (pure)
def test_fn_sub_keeps_double_dollar_and_unescapes_bang_placeholders() -> None:
    r = resolver()
    assert r.resolve({"Fn::Sub": '{"token.$": "$$.Task.Token", "x": "${!Literal}", "r": "${AWS::Region}"}'}, "t") == (
        '{"token.$": "$$.Task.Token", "x": "${Literal}", "r": "eu-west-1"}'
    )
    assert r.resolve({"Fn::Sub": ["${A}-${Stage}-${AWS::AccountId}", {"A": {"Ref": "AWS::StackName"}}]}, "t") == "s-dev-111122223333"


def test_condition_functions_and_list_functions() -> None:
    r = resolver()
    assert r.resolve({"Fn::If": ["IsProd", 365, 30]}, "t") == 30
    assert resolver(Stage="prod").resolve({"Fn::If": ["IsProd", 365, 30]}, "t") == 365
    assert r.resolve({"Fn::Not": [{"Condition": "IsProd"}]}, "t") is True
    assert r.resolve({"Fn::And": [{"Fn::Equals": ["a", "a"]}, {"Condition": "IsProd"}]}, "t") is False
    assert r.resolve({"Fn::Or": [{"Fn::Equals": ["a", "b"]}, {"Fn::Equals": [{"Ref": "Stage"}, "dev"]}]}, "t") is True
    assert r.resolve({"Fn::Join": ["/", ["a", {"Fn::Select": [2, {"Fn::Split": [",", "x,y,z"]}]}]]}, "t") == "a/z"
    assert r.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "Memory"]}, "t") == 256
    assert r.resolve({"Fn::Base64": "hi"}, "t") == "aGk="
    assert r.resolve({"A": {"Ref": "AWS::NoValue"}, "B": [1, {"Ref": "AWS::NoValue"}]}, "t") == {"B": [1]}


def test_unknown_references_and_intrinsics_are_clear_errors() -> None:
    r = resolver()
    with pytest.raises(TemplateError, match="unknown parameter or resource 'Nope'"):
        r.resolve({"Ref": "Nope"}, "Thing")
    with pytest.raises(TemplateError, match="Fn::ImportValue is not supported"):
        r.resolve({"Fn::ImportValue": "x"}, "Thing")
    with pytest.raises(TemplateError, match="unknown condition"):
        r.resolve({"Fn::If": ["Nope", 1, 2]}, "Thing")


def test_translate_replaces_local_paths_and_remembers_them(fixture_template: Path) -> None:
    from modelgate_emulator.template import load_template

    cfn, paths = translate(load_template(fixture_template), fixture_template.parent, region="us-east-1")
    assert paths["EchoFunction"] == (fixture_template.parent / "functions/echo").resolve()
    assert paths["Machine"] == (fixture_template.parent / "machine.asl.json").resolve()
    digest = content_digest(paths["EchoFunction"])
    assert cfn["Resources"]["EchoFunction"]["Properties"]["Code"] == {"S3Bucket": "modelgate-local-artifacts", "S3Key": f"EchoFunction/{digest}"}
    assert "AWS::Serverless::Function" not in json.dumps(cfn)


# ------------------------------------------------------------------ the fixture stack
def test_every_resource_of_the_template_exists_in_moto(local_aws: LocalAWS) -> None:
    stack = local_aws.stack
    s3 = local_aws.client("s3")
    bucket = stack.physical_id("Bucket")
    # Physical names are generated like CloudFormation's
    assert re.fullmatch(r"fixture-bucket-[a-z0-9]{12}", bucket)
    assert re.fullmatch(r"fixture-Table-[A-Z0-9]{12}", stack.physical_id("Table"))
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"][0]["Resource"][1] == f"arn:aws:s3:::{bucket}/*"
    table = local_aws.client("dynamodb").describe_table(TableName=stack.physical_id("Table"))["Table"]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["by_service"]
    assert local_aws.client("sns").get_topic_attributes(TopicArn=stack.physical_id("Topic"))["Attributes"]["TopicArn"]
    groups = local_aws.client("logs").describe_log_groups(logGroupNamePrefix=stack.physical_id("LogGroup"))["logGroups"]
    assert groups[0]["retentionInDays"] == 30  # !If [IsProd, 365, 30] with Stage=dev
    alarm = local_aws.client("cloudwatch").describe_alarms(AlarmNames=[stack.physical_id("ErrorsAlarm")])["MetricAlarms"][0]
    assert (alarm["MetricName"], alarm["Threshold"], alarm["Dimensions"]) == (
        "Errors",
        1.0,
        [{"Name": "FunctionName", "Value": stack.function_name("EchoFunction")}],
    )
    rule = local_aws.client("events").describe_rule(Name=stack.physical_id("EchoFunctionUploaded"))
    assert json.loads(rule["EventPattern"])["detail"]["bucket"]["name"] == [bucket]
    targets = local_aws.client("events").list_targets_by_rule(Rule=stack.physical_id("EchoFunctionUploaded"))["Targets"]
    assert targets[0]["Arn"] == stack.function("EchoFunction").arn
    assert targets[0]["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60}
    alias = local_aws.client("lambda").get_alias(FunctionName=stack.function_name("ServiceFunction"), Name="live")
    assert alias["FunctionVersion"] == "1"
    assert "ProdOnlyTopic" not in stack.resources  # Condition: IsProd
    assert stack.outputs == {
        "BucketName": bucket,
        "MachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:fixture-machine",
        "Joined": "dev|b|not-prod",
    }


def test_sqs_queues_their_policy_and_dead_letter_configs_are_deployed(local_aws: LocalAWS) -> None:
    stack = local_aws.stack
    sqs = local_aws.client("sqs")
    # Ref is the queue URL; GetAtt gives Arn and QueueName (a CloudFormation-style generated name)
    url = stack.physical_id("DeadLetters")
    name = stack.attribute("DeadLetters", "QueueName")
    assert re.fullmatch(r"fixture-DeadLetters-[A-Z0-9]{12}", name)
    assert url == sqs.get_queue_url(QueueName=name)["QueueUrl"] == stack.attribute("DeadLetters", "QueueUrl")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["QueueArn"] == stack.attribute("DeadLetters", "Arn")
    assert attributes["QueueArn"] == f"arn:aws:sqs:us-east-1:123456789012:{name}"
    assert (attributes["MessageRetentionPeriod"], attributes["SqsManagedSseEnabled"]) == ("1209600", "true")
    # The queue policy is on the queue, with the rule's ARN resolved in its condition
    policy = json.loads(attributes["Policy"])
    statement = policy["Statement"][0]
    assert (statement["Principal"], statement["Action"]) == ({"Service": "events.amazonaws.com"}, "sqs:SendMessage")
    rule_arn = local_aws.client("events").describe_rule(Name=stack.physical_id("EchoFunctionUploaded"))["Arn"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}}
    # The rule's target and the function's async config point at the queue
    rule_name = stack.physical_id("EchoFunctionUploaded")
    target = local_aws.client("events").list_targets_by_rule(Rule=rule_name)["Targets"][0]
    assert target["DeadLetterConfig"] == {"Arn": attributes["QueueArn"]}


def test_a_fifo_queue_name_must_end_in_fifo(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text(
        "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: plain\n      FifoQueue: true\n"
    )
    with pytest.raises(TemplateError, match=r"Q: a FIFO queue's name ends in \.fifo"), LocalAWS(template):
        pass


def test_parameter_values_are_resolved_with_fn_sub_in_both_forms(local_aws: LocalAWS) -> None:
    stack = local_aws.stack
    value = local_aws.client("ssm").get_parameter(Name="/fixture/fixture/registration")["Parameter"]["Value"]
    assert json.loads(value) == {
        "function": stack.function_name("ServiceFunction"),
        "alarm": stack.physical_id("ErrorsAlarm"),
        "greeting": "hello",
        "region": "us-east-1",
        "literal": "${Literal}",
        "token": "$$.Task.Token",
        "topic": stack.attribute("Topic", "TopicName"),
        "prod": "no",
    }


def test_function_specs_say_where_the_code_is(local_aws: LocalAWS, fixtures_dir: Path) -> None:
    spec = local_aws.stack.function("EchoFunction")
    assert spec.code_dir == (fixtures_dir / "functions/echo").resolve()
    assert spec.handler == "app.lambda_handler"
    assert spec.layer_dirs == ((fixtures_dir / "layer").resolve(),)
    assert spec.environment["WHO"] == "echo"
    assert (spec.timeout, spec.memory_size) == (5, 256)
    assert local_aws.stack.function(spec.function_name) is spec


def test_the_bucket_sends_object_created_to_eventbridge(local_aws: LocalAWS, poll: Callable[..., Any]) -> None:
    # Given a queue subscribed to the default bus, next to the stack's own rule
    sqs = local_aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="s3-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = local_aws.client("events")
    events.put_rule(Name="all-s3", EventPattern=json.dumps({"source": ["aws.s3"]}))
    events.put_targets(Rule="all-s3", Targets=[{"Id": "q", "Arn": queue_arn}])
    before = len(local_aws.invocations("EchoFunction"))
    # When an object is uploaded to the stack's bucket
    bucket = local_aws.stack.physical_id("Bucket")
    local_aws.client("s3").put_object(Bucket=bucket, Key="releases/x/model-config.json", Body=b"{}")
    # Then EventBridge got "Object Created" from the bucket
    messages = poll(lambda: sqs.receive_message(QueueUrl=queue_url).get("Messages"), what="the S3 event")
    event = json.loads(messages[0]["Body"])
    assert (event["source"], event["detail-type"]) == ("aws.s3", "Object Created")
    assert event["detail"]["bucket"]["name"] == bucket
    assert event["detail"]["object"]["key"] == "releases/x/model-config.json"
    # And the stack's rule delivered it to its Lambda target
    records = poll(lambda: local_aws.invocations("EchoFunction")[before:], what="the Lambda target")
    assert records[0].invocation_type == "Event"


# ------------------------------------------------------------------ overrides and errors
def test_parameter_overrides_and_conditions(fixture_template: Path) -> None:
    with LocalAWS(fixture_template, stack_name="prod-fixture", parameters={"Stage": "prod", "Greeting": "hi"}) as local:
        stack = local.stack
        assert "ProdOnlyTopic" in stack.resources
        assert stack.outputs["ProdTopic"] == stack.physical_id("ProdOnlyTopic")
        assert stack.outputs["Joined"] == "prod|b|prod"
        groups = local.client("logs").describe_log_groups(logGroupNamePrefix=stack.physical_id("LogGroup"))["logGroups"]
        assert groups[0]["retentionInDays"] == 365
        assert local.invoke("EchoFunction", {})["env"]["STAGE"] == "prod"


def test_bad_parameters_are_rejected(fixture_template: Path) -> None:
    with pytest.raises(TemplateError, match="not one of"):
        with LocalAWS(fixture_template, parameters={"Stage": "qa"}):
            pass
    with pytest.raises(TemplateError, match="not declared"):
        with LocalAWS(fixture_template, parameters={"Nope": "x"}):
            pass


def write(tmp_path: Path, resources: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text('AWSTemplateFormatVersion: "2010-09-09"\nResources:\n' + resources)
    return path


def test_an_unsupported_resource_type_is_named(tmp_path: Path) -> None:
    template = write(tmp_path, "  Stream:\n    Type: AWS::Kinesis::Stream\n")
    with pytest.raises(TemplateError, match=r"Stream: resource type AWS::Kinesis::Stream is not supported"):
        with LocalAWS(template):
            pass


def test_an_unsupported_attribute_is_named(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        "  Topic:\n    Type: AWS::SNS::Topic\n"
        "  Param:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Type: String\n"
        "      Value: !GetAtt Topic.Nonsense\n",
    )
    with pytest.raises(TemplateError, match=r"Fn::GetAtt Topic.Nonsense is not supported locally for AWS::SNS::Topic"):
        with LocalAWS(template):
            pass


def test_a_missing_definition_substitution_is_named(tmp_path: Path) -> None:
    (tmp_path / "m.asl.json").write_text('{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${MissingArn}", "End": true}}}')
    template = tmp_path / "template.yaml"
    template.write_text(
        'AWSTemplateFormatVersion: "2010-09-09"\nTransform: AWS::Serverless-2016-10-31\nResources:\n'
        "  M:\n    Type: AWS::Serverless::StateMachine\n    Properties:\n      DefinitionUri: m.asl.json\n"
        "      DefinitionSubstitutions:\n        OtherArn: x\n"
    )
    with pytest.raises(TemplateError, match="DefinitionSubstitutions has no value for MissingArn"):
        with LocalAWS(template):
            pass


# ------------------------------------------------------------------ the real template
def test_the_real_template_deploys_and_its_functions_have_code(repo_root: Path) -> None:
    # The project's template.yaml, as `sam deploy` would get it, with the local model provider
    with LocalAWS(repo_root / "template.yaml", parameters={"ModelProvider": "local"}) as local:
        stack = local.stack
        template_functions = [k for k, r in stack.resources.items() if r.type == "AWS::Lambda::Function"]
        assert template_functions and set(template_functions) == set(stack.functions)
        for spec in stack.functions.values():
            assert spec.code_dir is not None and (spec.code_dir / "app.py").is_file(), spec.logical_id
            assert spec.layer_dirs == ((repo_root / "src").resolve(),)
        # The pipeline is in the executing backend, every ARN substituted
        definition = local.client("stepfunctions").describe_state_machine(
            stateMachineArn=stack.outputs["ReleasePipelineArn"]
        )["definition"]
        assert "${" not in definition
        json.loads(definition)
        # Alarms and the live alias exist (moto's CloudFormation would skip them)
        alarms = {a["AlarmName"] for a in local.client("cloudwatch").describe_alarms()["MetricAlarms"]}
        assert {stack.physical_id("SampleServiceErrorsAlarm"), stack.physical_id("SampleServiceLatencyAlarm")} <= alarms
        service = stack.function_name("SampleServiceFunction")
        assert local.client("lambda").get_alias(FunctionName=service, Name="live")["FunctionVersion"] == "1"
        assert stack.functions["SampleServiceFunction"].environment["MODEL_PROVIDER"] == "local"


def test_an_upload_the_intake_cannot_take_lands_in_its_dead_letter_queue(
    repo_root: Path, poll: Callable[..., Any]
) -> None:
    # Given the real stack, whose intake rule's target has a dead-letter queue, and an intake
    # function that is gone (EventBridge can't deliver: after its RetryPolicy, the DLQ)
    with LocalAWS(repo_root / "template.yaml", stack_name="dlq", parameters={"ModelProvider": "local"}) as local:
        stack = local.stack
        local.client("lambda").delete_function(FunctionName=stack.function_name("IntakeFunction"))
        # When CI uploads a release manifest
        bucket = stack.outputs["ArtifactBucketName"]
        key = "releases/support-bot/0123abc/model-config.json"
        local.client("s3").put_object(Bucket=bucket, Key=key, Body=b"{}")
        # Then the S3 event is in the intake dead-letter queue, saying which rule and target failed
        sqs = local.client("sqs")
        queue_url = stack.outputs["IntakeDeadLetterQueueUrl"]
        messages = poll(
            lambda: sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"]).get("Messages"),
            timeout=30.0,
            what="the dead-lettered upload event",
        )
        event = json.loads(messages[0]["Body"])
        assert (event["detail-type"], event["detail"]["object"]["key"]) == ("Object Created", key)
        attributes = {k: v["StringValue"] for k, v in messages[0]["MessageAttributes"].items()}
        rule = local.client("events").describe_rule(Name=stack.physical_id("IntakeFunctionManifestUploaded"))
        assert attributes["RULE_ARN"] == rule["Arn"]
        assert attributes["TARGET_ARN"] == stack.function("IntakeFunction").arn
        # And the alarm that watches that queue notifies the operations topic
        alarm_name = stack.physical_id("IntakeDeadLetterAlarm")
        alarm = local.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"][0]
        queue_name = stack.attribute("IntakeDeadLetterQueue", "QueueName")
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue_name}]
        assert alarm["AlarmActions"] == [stack.outputs["OperationsTopicArn"]]


# ------------------------------------------------------------------ redeploys (a stack update)
def _copy_fixtures(fixtures_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(fixtures_dir, tmp_path / "stack", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "stack" / "template.yaml"


def test_redeploy_updates_changed_code_in_place_and_leaves_the_rest_alone(fixtures_dir: Path, tmp_path: Path) -> None:
    template = _copy_fixtures(fixtures_dir, tmp_path)
    with LocalAWS(template, stack_name="redeploy-code", seed=7) as local:
        lam = local.client("lambda")
        echo, other = local.function_name("EchoFunction"), local.function_name("OtherFunction")
        before = {name: lam.get_function_configuration(FunctionName=name)["CodeSha256"] for name in (echo, other)}
        resources_before = dict(local.stack.resources)
        stack_id, parameters = local.stack.stack_id, local.stack.parameters
        # Given a code change in one function (a new folder, as each `sam build` uploads a new zip)
        shutil.copytree(template.parent / "functions/echo", tmp_path / "echo2")
        (tmp_path / "echo2" / "app.py").write_text((tmp_path / "echo2" / "app.py").read_text().replace('MODULE_ID = "echo"', 'MODULE_ID = "echo-2"'))
        text = template.read_text()
        template.write_text(text.replace("CodeUri: functions/echo/", f"CodeUri: {tmp_path / 'echo2'}/"))
        # When the stack is redeployed
        stack = local.redeploy()
        # Then that function runs its new code under the same name and ARN; nothing else changed
        assert stack.function("EchoFunction").code_dir == (tmp_path / "echo2").resolve()
        assert local.invoke("EchoFunction", {})["module"] == "echo-2"
        assert lam.get_function_configuration(FunctionName=echo)["CodeSha256"] != before[echo]
        assert lam.get_function_configuration(FunctionName=other)["CodeSha256"] == before[other]
        assert stack.resources["EchoFunction"].physical_id == resources_before["EchoFunction"].physical_id
        unchanged = [k for k in resources_before if k != "EchoFunction"]
        assert all(stack.resources[k] is resources_before[k] for k in unchanged)
        assert (stack.stack_id, stack.parameters) == (stack_id, parameters)


def test_redeploy_with_auto_publish_alias_moves_the_alias_as_sam_does(fixtures_dir: Path, tmp_path: Path) -> None:
    """SAM's AutoPublishAlias publishes a new version and points the alias at it whenever the
    function's code changes (https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/sam-resource-function.html#sam-function-autopublishalias):
    the reason Modelgate's template declares `live` without it."""
    template = _copy_fixtures(fixtures_dir, tmp_path)
    with LocalAWS(template, stack_name="redeploy-alias", seed=7) as local:
        lam = local.client("lambda")
        service = local.function_name("ServiceFunction")
        assert lam.get_alias(FunctionName=service, Name="live")["FunctionVersion"] == "1"
        (template.parent / "functions/service/app.py").write_text(
            (template.parent / "functions/service/app.py").read_text() + "\nREDEPLOYED = True\n"
        )
        local.redeploy()
        assert lam.get_alias(FunctionName=service, Name="live")["FunctionVersion"] == "2"
        assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=service)["Versions"]] == ["$LATEST", "1", "2"]
        assert any("retained (DeletionPolicy: Retain)" in note for note in local.stack.notes)


def test_redeploy_names_what_it_cannot_apply(fixtures_dir: Path, tmp_path: Path) -> None:
    template = _copy_fixtures(fixtures_dir, tmp_path)
    with LocalAWS(template, stack_name="redeploy-refused", seed=7) as local:
        text = template.read_text()
        template.write_text(text.replace("Type: AWS::SNS::Topic\n", "Type: AWS::SNS::Topic\n    Properties: {DisplayName: changed}\n", 1))
        with pytest.raises(TemplateError, match=r"Topic \(AWS::SNS::Topic\): changed DisplayName; updating this resource type is not supported locally"):
            local.redeploy()
        template.write_text(text)
        with pytest.raises(TemplateError, match="parameter override.*not declared in the template: Nope"):
            local.redeploy(parameters={"Nope": "1"})


# ------------------------------------------------------------------ per-process caches
def test_the_libyaml_loader_reads_templates_as_cfn_flip_does(fixture_template: Path, repo_root: Path) -> None:
    from cfn_flip import load_yaml
    from modelgate_emulator.template import parse_template_text

    for path in (fixture_template, repo_root / "template.yaml"):
        text = path.read_text()
        assert parse_template_text(text) == json.loads(json.dumps(load_yaml(text))), path
    short_forms = "A: !Ref B\nC: !GetAtt D.Arn\nE: !Sub '${X}-$$'\nF: !If [Cond, !Ref G, !Ref AWS::NoValue]\n"
    assert parse_template_text(short_forms) == {
        "A": {"Ref": "B"},
        "C": {"Fn::GetAtt": ["D", "Arn"]},
        "E": {"Fn::Sub": "${X}-$$"},
        "F": {"Fn::If": ["Cond", {"Ref": "G"}, {"Ref": "AWS::NoValue"}]},
    }


def test_a_cached_template_is_a_fresh_copy_per_caller_and_follows_the_file(tmp_path: Path) -> None:
    from modelgate_emulator.template import load_template

    path = tmp_path / "t.yaml"
    path.write_text("Resources:\n  Q:\n    Type: AWS::SQS::Queue\n")
    first = load_template(path)
    first["Resources"]["Q"]["Type"] = "changed by a caller"
    assert load_template(path) == {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}
    path.write_text("Resources:\n  T:\n    Type: AWS::SNS::Topic\n")
    assert load_template(path) == {"Resources": {"T": {"Type": "AWS::SNS::Topic"}}}


def test_a_cached_translation_is_a_fresh_copy_and_changed_code_is_a_new_key(fixture_template: Path, tmp_path: Path) -> None:
    from modelgate_emulator.template import load_template

    folder = tmp_path / "stack"
    shutil.copytree(fixture_template.parent, folder)
    template = load_template(folder / "template.yaml")
    first, _ = translate(template, folder, region="us-east-1")
    key = first["Resources"]["EchoFunction"]["Properties"]["Code"]["S3Key"]
    first["Resources"].clear()
    again, _ = translate(template, folder, region="us-east-1")
    assert again["Resources"]["EchoFunction"]["Properties"]["Code"]["S3Key"] == key
    (folder / "functions" / "echo" / "app.py").write_text((folder / "functions" / "echo" / "app.py").read_text() + "\n# v2\n")
    changed, _ = translate(template, folder, region="us-east-1")
    assert changed["Resources"]["EchoFunction"]["Properties"]["Code"]["S3Key"] != key
    with pytest.raises(TemplateError, match="SAM transform failed"):
        translate({**template, "Resources": {"Bad": {"Type": "AWS::Serverless::Function", "Properties": {}}}}, folder, region="us-east-1")
