"""The layer's module caches, one per execution environment, so IAM judges every function's calls.

On AWS a function's execution environment is one process that serves all its invocations,
and environments are never shared across functions ("Understanding the Lambda execution
environment", AWS Lambda Operator Guide: "Execution environments are never shared across
functions ... All of these invocations are handled by a single process, so any process-wide
state ... is available across all invocations within the same execution environment";
"Understanding the Lambda execution environment lifecycle", AWS Lambda Developer Guide,
https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html). A value the layer keeps at module level
(a secret, an S3 object it read) is therefore read once per environment, with that function's
execution role.

Locally every function shares one Python process and one copy of the layer (``modelgate`` is
imported once), while each handler module is loaded apart (``lambda_runtime``). A module-level
cache in the layer was one for all functions: whichever function read first made the call,
and every later function, under another role, was served from the cache. IAM enforcement
never saw those calls (a role lacking the grant passed) and the least-privilege report never
recorded them. While an :class:`~modelgate_emulator.iam.Enforcer` is installed, each cache
listed in :data:`SCOPED_CACHES` is replaced by an :class:`EnvironmentScopedDict`: one dict per
execution environment, as each environment's own process would have. The environment is told
apart by ``AWS_LAMBDA_LOG_STREAM_NAME``, which the Lambda runtime sets per environment (one log
stream per environment, "How CloudWatch structures logs", Lambda Operator Guide) and the
local runtime sets in each handler's environment overlay (``environ.py``); code outside any
handler (tests, the harness, the CLI) shares one scope of its own.

``tests/unit/local/test_iam_caches.py`` scans the layer for module-level dicts and
``lru_cache`` functions and requires each one that keeps what an AWS call returned to be listed
here.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

# (module, attribute) of every module-level cache in the layer that holds what an AWS call returned.
SCOPED_CACHES: tuple[tuple[str, str], ...] = (
    ("modelgate.approval.keys", "_cache"),  # the approval signing keys (secretsmanager:GetSecretValue)
    ("modelgate.inference", "_cache"),  # a release's manifest and prompts (s3:GetObjectVersion)
    ("modelgate.inference", "_pin_cache"),  # a release pin's prompt versions (s3:GetObjectVersion)
)

ENVIRONMENT_VARIABLE = "AWS_LAMBDA_LOG_STREAM_NAME"
_OUTSIDE = ""  # the scope of code that runs in no execution environment


def environment_id() -> str:
    """The current execution environment (its log stream), or "" outside every handler."""
    return os.environ.get(ENVIRONMENT_VARIABLE) or _OUTSIDE


class EnvironmentScopedDict(MutableMapping[Any, Any]):
    """A dict per execution environment behind one mapping: every read and write goes to the
    current environment's dict; :meth:`clear` forgets every environment's entries (what the
    layer's ``clear_*_cache`` helpers mean: a new stack, a revoked key)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes: dict[str, dict[Any, Any]] = {_OUTSIDE: {}}

    def _scope(self) -> dict[Any, Any]:
        key = environment_id()
        with self._lock:
            return self._scopes.setdefault(key, {})

    def scopes(self) -> dict[str, dict[Any, Any]]:
        """A copy of every environment's entries (tests)."""
        with self._lock:
            return {key: dict(value) for key, value in self._scopes.items() if value}

    def __getitem__(self, key: Any) -> Any:
        return self._scope()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._scope()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._scope()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._scope()))

    def __len__(self) -> int:
        return len(self._scope())

    def clear(self) -> None:
        with self._lock:
            self._scopes = {_OUTSIDE: {}}

    def __repr__(self) -> str:
        return f"EnvironmentScopedDict({self.scopes()!r})"


def patches() -> list[tuple[Any, str, Any]]:
    """(module, attribute, an empty scoped dict) for each cache of :data:`SCOPED_CACHES` whose
    module the process can import (the layer is on the path wherever functions run locally).
    What the process-wide dict held is left behind with it, as a new stack starts cold."""
    found: list[tuple[Any, str, Any]] = []
    for module_name, attribute in SCOPED_CACHES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        current = getattr(module, attribute, None)
        if current is None:
            raise AttributeError(f"{module_name}.{attribute} is listed in SCOPED_CACHES but does not exist")
        if not isinstance(current, MutableMapping):
            raise TypeError(f"{module_name}.{attribute} is a {type(current).__name__}, not a dict: it can't be scoped")
        found.append((module, attribute, EnvironmentScopedDict()))
    return found
