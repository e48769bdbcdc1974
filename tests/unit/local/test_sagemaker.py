"""SageMaker Model Registry on the embedded AWS: moto's model packages, shimmed where moto differs
from AWS (modelgate_emulator/sagemaker.py), and the IAM each call needs (iam_policy)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from modelgate_emulator.iam_policy import requests_for_call
from modelgate_emulator.sagemaker import model_registry_as_aws
from moto import mock_aws

GROUP = "stack-support-bot"


@pytest.fixture
def sagemaker(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("sagemaker", region_name="us-east-1")
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        yield client


def _package(sm, **extra) -> str:
    return sm.create_model_package(ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
                                   CustomerMetadataProperties={"release": "r-1"}, **extra)["ModelPackageArn"]


def test_moto_alone_erases_what_an_update_does_not_name(sagemaker):
    # The gap the shim closes (if moto fixes it, this test says so and the shim can go)
    arn = _package(sagemaker)
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    assert "CustomerMetadataProperties" not in sagemaker.describe_model_package(ModelPackageName=arn)


def test_an_update_changes_only_what_it_names(sagemaker):
    with model_registry_as_aws():
        arn = _package(sagemaker)
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="ok")
        sagemaker.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"gate": "pass"})
        found = sagemaker.describe_model_package(ModelPackageName=arn)
        assert found["ModelApprovalStatus"] == "Approved" and found["ApprovalDescription"] == "ok"
        assert found["CustomerMetadataProperties"] == {"release": "r-1", "gate": "pass"}
        sagemaker.update_model_package(ModelPackageArn=arn, CustomerMetadataPropertiesToRemove=["gate"])
        assert sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"] == {"release": "r-1"}


def test_a_create_retried_with_its_client_token_returns_the_first_package(sagemaker):
    with model_registry_as_aws():
        first = _package(sagemaker, ClientToken="release-1")
        assert _package(sagemaker, ClientToken="release-1") == first
        other = _package(sagemaker, ClientToken="release-2")
        assert other != first and other.endswith(f"/{GROUP}/2")
        assert len(sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]) == 2


@pytest.mark.parametrize(
    ("properties", "problem"),
    [
        ({"branch": "feature/#1"}, "value of 'branch'"),
        ({"k": "v" * 257}, "value of 'k'"),
        ({"k" * 129: "v"}, "key 'kkk"),
        ({f"k{i}": "v" for i in range(51)}, "51 entries"),
    ],
)
def test_metadata_aws_refuses_is_refused(sagemaker, properties, problem):
    with model_registry_as_aws(), pytest.raises(ClientError, match=problem) as caught:
        sagemaker.create_model_package(ModelPackageGroupName=GROUP, CustomerMetadataProperties=properties)
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_letters_numbers_separators_and_the_listed_punctuation_are_metadata(sagemaker):
    with model_registry_as_aws():
        arn = sagemaker.create_model_package(ModelPackageGroupName=GROUP, CustomerMetadataProperties={
            "modelgate:report": "s3://bucket/reports/svc/r-1/report.json", "branch": "naïve 1.0=+@-_"})["ModelPackageArn"]
        assert sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]["branch"] == "naïve 1.0=+@-_"


@pytest.mark.parametrize(
    ("operation", "params", "action", "resource"),
    [
        ("CreateModelPackageGroup", {"ModelPackageGroupName": GROUP}, "sagemaker:CreateModelPackageGroup",
         f"model-package-group/{GROUP}"),
        ("DescribeModelPackageGroup", {"ModelPackageGroupName": GROUP}, "sagemaker:DescribeModelPackageGroup",
         f"model-package-group/{GROUP}"),
        ("CreateModelPackage", {"ModelPackageGroupName": GROUP}, "sagemaker:CreateModelPackage",
         f"model-package-group/{GROUP}"),
        ("UpdateModelPackage", {"ModelPackageArn": f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}/3"},
         "sagemaker:UpdateModelPackage", f"model-package/{GROUP}/3"),
    ],
)
def test_each_registry_call_is_authorised_on_its_group_or_version(operation, params, action, resource):
    [request] = requests_for_call("sagemaker", operation, params, region="us-east-1", account_id="123456789012")
    assert request.action == action and request.resource == f"arn:aws:sagemaker:us-east-1:123456789012:{resource}"


def test_a_package_arn_of_another_kind_is_refused():
    from modelgate_emulator.iam_policy import InvalidCallParameters

    with pytest.raises(InvalidCallParameters, match="is not a sagemaker model-package ARN"):
        requests_for_call("sagemaker", "UpdateModelPackage", {"ModelPackageArn": "arn:aws:s3:::bucket"},
                          region="us-east-1", account_id="123456789012")
