"""SageMaker Model Registry as AWS runs it, where moto 5.2.1 differs.

moto serves model package groups and versioned model packages (CreateModelPackageGroup,
CreateModelPackage with ModelPackageGroupName, UpdateModelPackage, DescribeModelPackage,
ListModelPackages), and differs from AWS in three ways the release pipeline depends on:

- **UpdateModelPackage drops what it was not given.** moto sets ``ApprovalDescription`` and
  ``CustomerMetadataProperties`` to the request's values, so an update of the approval status
  alone erases the package's metadata. AWS changes only what the request names: metadata goes
  only through ``CustomerMetadataPropertiesToRemove`` ("UpdateModelPackage", SageMaker API
  Reference, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateModelPackage.html:
  ``CustomerMetadataProperties`` are "the metadata properties associated with the model package
  versions", ``CustomerMetadataPropertiesToRemove`` "the metadata properties ... to remove").
  Here the update merges the given properties into the existing ones and keeps the description
  unless one is given.
- **ClientToken is ignored.** AWS documents it as "a unique token that guarantees that the call
  to this API is idempotent" ("CreateModelPackage", API Reference,
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModelPackage.html): a
  retried create with the same token returns the package the first call created. moto creates
  another version. Here a token seen before returns the first package's ARN.
- **CustomerMetadataProperties are not validated.** AWS allows at most 50 entries, keys of
  1-128 and values of 1-256 characters, each matching ``^([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)$``
  ("ModelPackage", API Reference,
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ModelPackage.html), and refuses
  anything else with a ValidationException. Here CreateModelPackage and UpdateModelPackage
  refuse them the same way, so a value the pipeline builds from an upload (a branch with ``#``)
  fails locally as it would on AWS.

Test: tests/unit/local/test_sagemaker.py.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any
from unittest import mock

MAX_METADATA_ENTRIES = 50
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 256
_METADATA_PUNCTUATION = frozenset("_.:/=+-@")


def _metadata_text(text: str) -> bool:
    """Every character \\p{L} (letter), \\p{Z} (separator), \\p{N} (number) or one of _.:/=+-@."""
    return all(unicodedata.category(ch)[0] in "LZN" or ch in _METADATA_PUNCTUATION for ch in text)

_LOCK = threading.Lock()


def metadata_problem(properties: Mapping[str, Any] | None) -> str | None:
    """Why AWS would refuse these CustomerMetadataProperties, or None."""
    if not properties:
        return None
    if len(properties) > MAX_METADATA_ENTRIES:
        return f"CustomerMetadataProperties has {len(properties)} entries; at most {MAX_METADATA_ENTRIES}"
    for key, value in properties.items():
        if not 1 <= len(key) <= MAX_METADATA_KEY or not _metadata_text(key):
            return f"CustomerMetadataProperties key {key!r} must be 1-{MAX_METADATA_KEY} characters of " \
                   "letters, numbers, spaces and _.:/=+-@"
        text = str(value)
        if not 1 <= len(text) <= MAX_METADATA_VALUE or not _metadata_text(text):
            return f"CustomerMetadataProperties value of {key!r} must be 1-{MAX_METADATA_VALUE} characters of " \
                   "letters, numbers, spaces and _.:/=+-@"
    return None


@contextlib.contextmanager
def model_registry_as_aws() -> Iterator[None]:
    """While active, moto's model packages behave as the module docstring says."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend

    original_create = SageMakerModelBackend.create_model_package
    original_update = SageMakerModelBackend.update_model_package

    @functools.wraps(original_create)
    def create_model_package(self: Any, *args: Any, **kwargs: Any) -> str:
        problem = metadata_problem(kwargs.get("customer_metadata_properties"))
        if problem:
            raise ValidationError(problem)
        token = kwargs.get("client_token")
        with _LOCK:
            tokens: dict[str, str] = self.__dict__.setdefault("_modelgate_client_tokens", {})
            if token and token in tokens and tokens[token] in self.model_packages:
                return tokens[token]
            arn = original_create(self, *args, **kwargs)
            if token:
                tokens[token] = arn
            return arn

    @functools.wraps(original_update)
    def update_model_package(
        self: Any,
        model_package_arn: str,
        model_approval_status: str | None,
        approval_description: str | None,
        customer_metadata_properties: dict[str, str] | None,
        customer_metadata_properties_to_remove: list[str],
        additional_inference_specifications_to_add: list[Any] | None,
    ) -> str:
        problem = metadata_problem(customer_metadata_properties)
        if problem:
            raise ValidationError(problem)
        with _LOCK:
            mapped = self.model_package_name_mapping.get(model_package_arn, model_package_arn)
            package = self.model_packages.get(mapped)
            if package is None:
                return original_update(  # moto's own "not found"
                    self, model_package_arn, model_approval_status, approval_description,
                    customer_metadata_properties, customer_metadata_properties_to_remove,
                    additional_inference_specifications_to_add,
                )
            merged = {**(package.customer_metadata_properties or {}), **(customer_metadata_properties or {})}
            description = approval_description if approval_description is not None else package.approval_description
            status = model_approval_status if model_approval_status is not None else package.model_approval_status
            return original_update(
                self, model_package_arn, status, description, merged,
                customer_metadata_properties_to_remove or [], additional_inference_specifications_to_add,
            )

    with mock.patch.object(SageMakerModelBackend, "create_model_package", create_model_package), \
            mock.patch.object(SageMakerModelBackend, "update_model_package", update_model_package):
        yield
