"""The embedded local AWS: moto in process, the stack deployed from template.yaml itself,
Lambda handlers run in process, the real ASL executed with a time factor.

Entry points: :class:`LocalAWS` (a context manager), and :func:`invoke_event` /
:func:`run_function` (what ``modelgate invoke FUNCTION -e EVENT.json`` runs). Every moto workaround lives in this
package and names the moto 5.2.1 behaviour it covers in its module docstring.
"""

from __future__ import annotations

from modelgate_emulator.faults import Fault, FaultInjector
from modelgate_emulator.lambda_runtime import (
    InvocationRecord,
    LambdaInvokeError,
    LambdaRuntime,
)
from modelgate_emulator.runtime import (
    InvokeOutcome,
    LocalAWS,
    invoke_event,
    run_function,
)
from modelgate_emulator.stepfunctions import history_path, wait_for_execution
from modelgate_emulator.template import FunctionSpec, Stack, TemplateError

__all__ = [
    "Fault",
    "FaultInjector",
    "FunctionSpec",
    "InvocationRecord",
    "InvokeOutcome",
    "LambdaInvokeError",
    "LambdaRuntime",
    "LocalAWS",
    "Stack",
    "TemplateError",
    "history_path",
    "invoke_event",
    "run_function",
    "wait_for_execution",
]
