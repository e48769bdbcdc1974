"""Service registrations: one SSM parameter per service under the stack's prefix.

The policy lives here, with the control plane, so an artefact can never lower its own bar.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from modelgate.errors import ConfigurationError, ServiceNotRegistered, error_code
from modelgate.policy import ServiceConfig


def get_service(ssm: Any, prefix: str, service: str, *, function_prefix: str | None = None) -> ServiceConfig:
    """The registration of ``service``; with ``function_prefix``, its function must be named
    so (the pipeline's roles may touch no other function: a misregistration fails here,
    with its reason, instead of as an AccessDenied halfway through a release)."""
    name = f"{prefix}{service}"
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            raise ServiceNotRegistered(
                f"service {service!r} is not registered with this control plane "
                f"(no SSM parameter {name})"
            ) from exc
        raise
    try:
        config = ServiceConfig.model_validate_json(value)
    except ValidationError as exc:
        raise ConfigurationError(f"registration {name} is invalid: {exc}") from exc
    if config.service != service:
        raise ConfigurationError(f"registration {name} names service {config.service!r}")
    function = config.function_name.rsplit(":function:", 1)[-1].split(":", 1)[0]
    if function_prefix is not None and not function.startswith(function_prefix):
        raise ConfigurationError(
            f"registration {name}: function {function!r} is not named {function_prefix}<service>, "
            "so this stack's roles may not publish, shift or invoke it"
        )
    return config


def list_services(ssm: Any, prefix: str) -> list[ServiceConfig]:
    services = []
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=prefix.rstrip("/")):
        for parameter in page["Parameters"]:
            services.append(ServiceConfig.model_validate_json(parameter["Value"]))
    return sorted(services, key=lambda s: s.service)
