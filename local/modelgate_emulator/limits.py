"""AWS service limits the embedded AWS enforces, refused the way AWS refuses them.

Each limit names the AWS documentation it models. moto 5.2.1 already enforces some of
them; those are tested (tests/unit/local/test_limits.py), not duplicated here:

- DynamoDB item size (400 KB): moto raises ``ValidationException`` "Item size has exceeded
  the maximum allowed size" (``moto/dynamodb/models/dynamo_type.py``; its threshold is
  405,000 bytes, between AWS's documented 400 KB = 409,600 bytes and what AWS measures).
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-items
- Step Functions state payload (256 KiB): a Lambda task whose result is 256 KiB or more
  fails the task with ``States.DataLimitExceeded`` (``moto/stepfunctions/parser/quotas.py``).
  https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html ("Maximum input
  or output size for a task, state, or execution: 256 KiB of data as a UTF-8 encoded string")
- Lambda response payload (6 MB): moto answers ``Function.ResponseSizeTooLarge`` ("Response
  payload size exceeded maximum allowed payload size (6291556 bytes).") with
  ``FunctionError: Unhandled`` (``moto/awslambda/responses.py``; it measures
  ``sys.getsizeof`` against 6,000,000, so it refuses from ~5.7 MiB where AWS refuses above
  6 MiB: stricter, never more lenient).

What :func:`enforced` adds, while active:

- Lambda environment variables, 4 KB in aggregate, on CreateFunction and
  UpdateFunctionConfiguration (the paths a published version's environment comes from:
  PublishVersion snapshots ``$LATEST``): ``InvalidParameterValueException`` "Lambda was
  unable to configure your environment variables because the environment variables you
  have provided exceeded the 4KB limit. String measured: {...}" - the variables measured as
  the JSON object AWS quotes back.
  https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html ("Environment
  variables: 4 KB, for all environment variables associated with the function, in aggregate")
  and https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html
- Lambda synchronous invocation request payload, 6 MB (6,291,456 bytes):
  ``RequestEntityTooLargeException`` (HTTP 413) "Request must be smaller than 6291456 bytes
  for the InvokeFunction operation". Same quotas page ("Invocation payload (request and
  response): 6 MB each for synchronous"); the exception is in
  https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html#API_Invoke_Errors
- A weighted alias routes to at most one additional version: CreateAlias / UpdateAlias with
  two or more ``AdditionalVersionWeights`` entries fail with Lambda's ``ValidationException``
  ("1 validation error detected: Value '...' at 'routingConfig.additionalVersionWeights'
  failed to satisfy constraint: Member must have length less than or equal to 1").
  https://docs.aws.amazon.com/lambda/latest/dg/configuring-alias-routing.html ("You can point
  an alias to a maximum of two Lambda function versions") and
  https://docs.aws.amazon.com/lambda/latest/api/API_AliasRoutingConfiguration.html ("The
  second version, and the percentage of traffic that's routed to it").
- Step Functions API parameters (botocore validates only minimum lengths, so AWS's service
  side is where these fail): SendTaskFailure / StopExecution ``cause`` at most 32,768
  characters and ``error`` at most 256; SendTaskSuccess ``output`` and StartExecution
  ``input`` at most 262,144 characters: ``ValidationException`` "1 validation error
  detected: Value at 'cause' failed to satisfy constraint: Member must have length less than
  or equal to 32768" (sensitive members are not echoed).
  https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskFailure.html,
  API_StopExecution.html, API_SendTaskSuccess.html, API_StartExecution.html (Length
  Constraints), and the quotas page above.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any
from unittest import mock

LAMBDA_ENVIRONMENT_BYTES = 4 * 1024
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
ALIAS_ADDITIONAL_VERSIONS = 1
SFN_PAYLOAD_CHARS = 256 * 1024
SFN_CAUSE_CHARS = 32_768
SFN_ERROR_CHARS = 256
DYNAMODB_ITEM_BYTES = 400 * 1024


def environment_measure(variables: Mapping[str, str]) -> str:
    """The string Lambda measures against the 4 KB limit (and quotes back when refusing)."""
    return json.dumps(dict(variables), separators=(",", ":"), ensure_ascii=False)


def environment_problem(variables: Mapping[str, str] | None) -> str | None:
    """Lambda's refusal message for ``variables``, or None when they fit in 4 KB."""
    if not variables:
        return None
    measured = environment_measure(variables)
    if len(measured.encode("utf-8")) <= LAMBDA_ENVIRONMENT_BYTES:
        return None
    return (
        "Lambda was unable to configure your environment variables because the environment variables "
        f"you have provided exceeded the 4KB limit. String measured: {measured}"
    )


def _length_problem(member: str, value: Any, maximum: int) -> str | None:
    if value is None or len(str(value)) <= maximum:
        return None
    return (
        f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
        f"Member must have length less than or equal to {maximum}"
    )


@contextlib.contextmanager
def enforced() -> Iterator[None]:
    """While active, moto refuses what AWS refuses past the limits listed in the module docstring."""
    from moto.awslambda.exceptions import InvalidParameterValueException, LambdaClientError
    from moto.awslambda.exceptions import ValidationException as LambdaValidationException
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda.responses import LambdaResponse
    from moto.stepfunctions.exceptions import ValidationException as SfnValidationException
    from moto.stepfunctions.responses import StepFunctionResponse

    class RequestEntityTooLargeException(LambdaClientError):
        code = 413

        def __init__(self, operation: str) -> None:
            super().__init__(
                "RequestEntityTooLargeException",
                f"Request must be smaller than {LAMBDA_SYNC_PAYLOAD_BYTES} bytes for the {operation} operation",
            )

    def check_environment(spec: Mapping[str, Any]) -> None:
        variables = (spec.get("Environment") or {}).get("Variables")
        problem = environment_problem(variables)
        if problem is not None:
            raise InvalidParameterValueException(problem)

    def check_routing(routing_config: Any) -> None:
        weights = (routing_config or {}).get("AdditionalVersionWeights") or {}
        if len(weights) > ALIAS_ADDITIONAL_VERSIONS:
            shown = "{" + ", ".join(f"{k}={v}" for k, v in weights.items()) + "}"
            raise LambdaValidationException(
                shown, "routingConfig.additionalVersionWeights", "Member must have length less than or equal to 1"
            )

    original_create = LambdaBackend.create_function
    original_update_config = LambdaBackend.update_function_configuration
    original_create_alias = LambdaBackend.create_alias
    original_update_alias = LambdaBackend.update_alias
    original_invoke = LambdaResponse.invoke

    @functools.wraps(original_create)
    def create_function(backend: Any, spec: dict[str, Any]) -> Any:
        check_environment(spec)
        return original_create(backend, spec)

    @functools.wraps(original_update_config)
    def update_function_configuration(backend: Any, function_name: str, qualifier: Any, body: dict[str, Any]) -> Any:
        check_environment(body)
        return original_update_config(backend, function_name, qualifier, body)

    @functools.wraps(original_create_alias)
    def create_alias(
        backend: Any, name: str, function_name: str, function_version: str, description: str, routing_config: Any
    ) -> Any:
        check_routing(routing_config)
        return original_create_alias(backend, name, function_name, function_version, description, routing_config)

    @functools.wraps(original_update_alias)
    def update_alias(
        backend: Any, name: str, function_name: str, function_version: str, description: str, routing_config: Any
    ) -> Any:
        check_routing(routing_config)
        return original_update_alias(backend, name, function_name, function_version, description, routing_config)

    def invoke(response: Any) -> Any:
        synchronous = (response.headers.get("X-Amz-Invocation-Type") or "RequestResponse") == "RequestResponse"
        if synchronous and len(response.body or b"") > LAMBDA_SYNC_PAYLOAD_BYTES:
            raise RequestEntityTooLargeException("InvokeFunction")
        return original_invoke(response)

    def sfn_checked(method_name: str, members: tuple[tuple[str, int], ...]) -> Any:
        original = getattr(StepFunctionResponse, method_name)

        @functools.wraps(original)
        def checked(response: Any) -> Any:
            for member, maximum in members:
                problem = _length_problem(member, response._get_param(member), maximum)
                if problem is not None:
                    raise SfnValidationException(problem)
            return original(response)

        return checked

    patches = [
        (LambdaBackend, "create_function", create_function),
        (LambdaBackend, "update_function_configuration", update_function_configuration),
        (LambdaBackend, "create_alias", create_alias),
        (LambdaBackend, "update_alias", update_alias),
        (LambdaResponse, "invoke", invoke),
        (
            StepFunctionResponse,
            "send_task_failure",
            sfn_checked("send_task_failure", (("error", SFN_ERROR_CHARS), ("cause", SFN_CAUSE_CHARS))),
        ),
        (
            StepFunctionResponse,
            "stop_execution",
            sfn_checked("stop_execution", (("error", SFN_ERROR_CHARS), ("cause", SFN_CAUSE_CHARS))),
        ),
        (StepFunctionResponse, "send_task_success", sfn_checked("send_task_success", (("output", SFN_PAYLOAD_CHARS),))),
        (StepFunctionResponse, "start_execution", sfn_checked("start_execution", (("input", SFN_PAYLOAD_CHARS),))),
    ]
    with contextlib.ExitStack() as stack:
        for owner, name, replacement in patches:
            stack.enter_context(mock.patch.object(owner, name, replacement))
        yield
