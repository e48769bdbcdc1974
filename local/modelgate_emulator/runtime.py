"""``LocalAWS``: the embedded AWS that tests, the demo and ``modelgate invoke`` run on.

One context manager wires the pieces together, in this order, and undoes all of it on
exit (tests run many LocalAWS one after another in one process):

1. fake credentials and region in the process environment;
2. ``moto.mock_aws`` with the executing Step Functions backend and Docker-free Lambda;
3. the in-process Lambda runtime (``lambda_runtime``), the Step Functions patches with the
   time factor (``stepfunctions``), EventBridge delivery (``events``) and CloudWatch
   alarm behaviour (``cloudwatch``);
4. the stack, deployed from template.yaml itself (``template``);
5. the alarm evaluator.

AWS's limits (Lambda environment and payload sizes, alias routing, Step Functions
parameter lengths) are enforced by ``limits``. Alias RevisionIds change on every update and
UpdateAlias honours one (``lambda_aliases``; :attr:`LocalAWS.aliases` is every UpdateAlias
seen, with a hook to make one slow). Bedrock batch inference jobs run on the nominal clock
(``bedrock_batch``). S3 bucket policies are evaluated
with their conditions by ``s3`` (a moto 5.2.1 behaviour
it names and covers).

IAM is enforced on every call (``iam``; ``enforce_iam=False`` only for tests of the
emulator itself): handlers run as their execution roles, executions as the state
machine's role, the deployer and test code as ``local-admin``; ``client(service,
principal="ci")`` and :meth:`LocalAWS.acting_as` run calls as a named CLI principal
(:data:`CLI_PRINCIPALS`), whose policy is the template's managed policy of that name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from unittest import mock
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import ClientError

from modelgate import clock as pipeline_clock
from modelgate.adapters import clients as aws
from modelgate.approval import keys as signing_keys
from modelgate_emulator import bedrock, dynamodb, iam, kms, lambda_aliases, limits, s3_lifecycle, sagemaker, serializer
from modelgate_emulator import logs as function_logs
from modelgate_emulator import s3 as s3_policies
from modelgate_emulator import stepfunctions as sfn_patches
from modelgate_emulator.bedrock_batch import BatchInference
from modelgate_emulator.clock import Clock, JumpingClock, LoadSafeClock
from modelgate_emulator.cloudwatch import DEFAULT_METRICS_DELAY_SECONDS, LambdaMetricsPublisher
from modelgate_emulator.emf import DEFAULT_EMF_DELAY_SECONDS
from modelgate_emulator.faults import Fault, SdkFaultInjector, SdkThrottle
from modelgate_emulator.lambda_runtime import (
    ASYNC_RETRY_DELAYS_SECONDS,
    InvocationRecord,
    LambdaInvokeError,
    LambdaRuntime,
    MetricsSink,
)
from modelgate_emulator.scheduler import ScheduleRunner, authorize_with_role
from modelgate_emulator.template import Stack, deploy, redeploy

if TYPE_CHECKING:
    from moto.core.config import DefaultConfig

LOG = logging.getLogger(__name__)

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
MOTO_CONFIG: DefaultConfig = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    # Not loading AWS-managed IAM policies saves ~1 s per start; moto enforces no policy, so
    # the deployer records the managed policy ARNs it could not attach and moves on.
    "iam": {"load_aws_managed_policies": False},
}


# Named local principals of the CLI -> the template Output naming the managed policy that
# the README tells users to attach to that identity on AWS.
CLI_PRINCIPALS: dict[str, str] = {
    "ci": "CiPolicyArn",
    "approver": "ApproverPolicyArn",
    "operator": "OperatorPolicyArn",
}


@dataclasses.dataclass(frozen=True)
class _Integrations:
    """The sibling modules LocalAWS wires in (a seam for tests that fake them)."""

    metrics_sink: MetricsSink | None
    install_cloudwatch: Callable[[], Callable[[], None]] | None
    install_events: Callable[..., Callable[[], None]] | None
    alarm_evaluator: Callable[..., Any] | None


def _integrations(clock: Clock, metrics_delay_seconds: float) -> _Integrations:
    from modelgate_emulator import cloudwatch, events

    return _Integrations(
        metrics_sink=cloudwatch.LambdaMetricsPublisher(clock, delay_seconds=metrics_delay_seconds),
        install_cloudwatch=cloudwatch.install,
        install_events=events.install,
        alarm_evaluator=cloudwatch.AlarmEvaluator,
    )


_SHARED_LOADER: Any = None
_SHARED_LOADER_LOCK = threading.Lock()


def _shared_model_loader(data_path: str | None) -> Any:
    """botocore's loader (``botocore.loaders.create_loader``), except that every service model it
    hands out has operations with their own ``http`` sections. botocore rewrites an S3
    operation's ``requestUri`` in place on its first call ("/{Bucket}?list-type=2" becomes
    "?list-type=2": ``botocore.handlers.remove_bucket_from_url_paths_from_model``, which says the
    change "stays in effect for the lifetime of the client object"), and the loader caches one
    dict per model: shared by every session of the process, that rewrite reached every later
    client, moto's included. moto builds its URI regexes from such a client once per process
    (``moto.core.responses._get_method_urls``); built from a rewritten model they do not compile
    ("nothing to repeat"), and S3's error responses (which look the action up there) failed in
    whichever process had made an S3 call before its first S3 error. Copying the operations'
    ``http`` dicts per client costs microseconds; the shapes stay shared."""
    import os

    import botocore.loaders

    class SharedModelLoader(botocore.loaders.Loader):
        def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
            model = super().load_service_model(service_name, type_name, api_version)  # parsed once
            operations = model.get("operations") if isinstance(model, dict) else None
            if not isinstance(operations, dict):
                return model
            return {
                **model,
                "operations": {
                    name: {**operation, "http": dict(operation["http"])} if "http" in operation else operation
                    for name, operation in operations.items()
                },
            }

    paths = [os.path.expanduser(os.path.expandvars(path)) for path in data_path.split(os.pathsep)] if data_path else None
    return SharedModelLoader(extra_search_paths=paths)


def _default_session_with_shared_models() -> None:
    """A fresh boto3 default session (moto starts each mock without one) that reads AWS's
    service models through one loader per process: each new session would otherwise parse
    the same JSON models again for every client (about half a second per stack). The loader
    only caches the files botocore ships; credentials, configuration and event handlers stay
    the new session's own (and each client its own copy of what botocore rewrites in a model:
    ``_shared_model_loader``)."""
    import botocore.session

    global _SHARED_LOADER
    core = botocore.session.get_session()
    with _SHARED_LOADER_LOCK:
        if _SHARED_LOADER is None:
            _SHARED_LOADER = _shared_model_loader(core.get_config_variable("data_path"))
        core.register_component("data_loader", _SHARED_LOADER)
        boto3.setup_default_session(botocore_session=core)
        paths = _SHARED_LOADER.search_paths  # each boto3 Session appends its resource folder again
        paths[:] = list(dict.fromkeys(paths))


@contextlib.contextmanager
def _action_names_remembered() -> Iterator[None]:
    """moto looks up a response class's methods (``inspect.getmembers``, ~1 ms) on every API
    call to find the action's handler; the classes do not change while the runtime runs (its
    own patches are in place by now), so each class's names are looked up once per start."""
    from moto.core import responses, utils

    names: dict[type, list[str]] = {}

    def method_names_from_class(clazz: Any) -> list[str]:
        found = names.get(clazz)
        if found is None:
            found = names[clazz] = utils.method_names_from_class(clazz)
        return found

    with mock.patch.object(responses, "method_names_from_class", method_names_from_class):
        yield


class LocalAWS:
    """Moto in process with the stack of ``template_path`` deployed and running.

    ``time_factor``: real seconds per nominal second for Step Functions waits and timeouts
    and CloudWatch alarm periods. ``work_timeout_floor``: a task that does real work (a
    request-response Lambda task) gets at least ``min(TimeoutSeconds, floor)`` seconds of
    task time (handler time, not real seconds: ``stepfunctions``); by default the whole
    nominal TimeoutSeconds, as on AWS (handlers run at real speed, so a busy machine must not
    turn slow work into a spurious States.Timeout).
    ``metrics_delay_seconds``: nominal seconds before an invocation's AWS/Lambda metrics
    can be read (AWS sends them in 1-minute intervals; see ``cloudwatch``).
    ``emf_delay_seconds``: nominal seconds before metrics in functions' EMF log lines can be
    read (``emf``: CloudWatch Logs extracts them; high resolution keeps the second).
    ``clock``: the runtime's nominal time (a :class:`LoadSafeClock`, restarted on entering:
    it stands still while handlers run); every timed part reads it, and the pipeline's own
    code reads it through ``modelgate.clock``.
    ``jump_when_idle``: a :class:`JumpingClock` instead: when every thread of the runtime
    and of the caller waits on the clock, nominal time jumps to the next deadline (waits
    then cost no real time). Only for callers that wait through the runtime (``sleep``,
    ``wait_for_execution``, ``modelgate_harness.polling.wait_until``): someone acting from
    another process or a thread the runtime does not know is not waited for.
    ``run_schedules``: fire the stack's EventBridge Scheduler schedules on the clock
    (``scheduler.ScheduleRunner``; on by default, as on AWS, where a rate schedule without a
    StartDate fires at once; a test that must not be joined by the monitor's or the drift
    check's runs may turn it off).
    ``internal_callbacks``: task states whose task token the stack itself answers (or whose
    timeout ends them, like a canary bake): the clock may jump over their waits. Every other
    callback (an approval) is external: no jump while it is pending.
    ``seed`` makes generated physical names and weighted-alias routing repeatable (each
    alias draws from its own generator seeded from it; ``None``: random as on AWS).
    ``echo_logs``: the functions' output also reaches the console (it always lands in their
    log groups, see ``logs.py``).

    >>> with LocalAWS("template.yaml", parameters={"ModelProvider": "local"}) as local:
    ...     local.invoke("GateFunction", {...})
    """

    def __init__(
        self,
        template_path: str | os.PathLike[str] = "template.yaml",
        *,
        parameters: Mapping[str, str] | None = None,
        stack_name: str = "modelgate-local",
        region: str = "us-east-1",
        time_factor: float = 0.01,
        alarm_tick_seconds: float = 0.05,
        work_timeout_floor: float = math.inf,
        seed: int | None = None,
        metrics_delay_seconds: float = DEFAULT_METRICS_DELAY_SECONDS,
        emf_delay_seconds: float = DEFAULT_EMF_DELAY_SECONDS,
        echo_logs: bool = True,
        enforce_iam: bool = True,
        jump_when_idle: bool = False,
        internal_callbacks: Collection[str] = (),
        run_schedules: bool = True,
    ) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor must be > 0: waits are scaled, never skipped")
        if metrics_delay_seconds < 0:
            raise ValueError(f"metrics_delay_seconds must be >= 0, got {metrics_delay_seconds}")
        self.template_path = Path(template_path)
        self.parameters = dict(parameters or {})
        self.stack_name = stack_name
        self.region = region
        self.time_factor = time_factor
        self.alarm_tick_seconds = alarm_tick_seconds
        self.work_timeout_floor = work_timeout_floor
        self.seed = seed
        self.metrics_delay_seconds = float(metrics_delay_seconds)
        if emf_delay_seconds < 0:
            raise ValueError(f"emf_delay_seconds must be >= 0, got {emf_delay_seconds}")
        self.emf_delay_seconds = float(emf_delay_seconds)
        self.clock: LoadSafeClock = LoadSafeClock(time_factor)
        self.echo_logs = echo_logs  # functions' output also on the console (always in their log groups)
        self.runtime: LambdaRuntime | None = None
        self._stack: Stack | None = None
        self._exit: contextlib.ExitStack | None = None
        self._clients: dict[str, Any] = {}
        self.account_id = ""
        self.enforce_iam = enforce_iam
        self.jump_when_idle = jump_when_idle
        self.internal_callbacks = frozenset(internal_callbacks)
        self.run_schedules = run_schedules
        self.enforcer: iam.Enforcer | None = None
        self.sdk_faults = SdkFaultInjector()
        self._principals: dict[str, iam.Principal] = {}
        self.aliases = lambda_aliases.AliasRecorder()  # every UpdateAlias, and hooks on it
        self.batch_inference: BatchInference | None = None  # Bedrock batch inference jobs, once started
        self.schedules: ScheduleRunner | None = None  # EventBridge Scheduler (scheduler.py), while running
        self.s3_lifecycle: s3_lifecycle.LifecycleRunner | None = None  # S3 Lifecycle expiration, while running
        self.foundation_models = bedrock.FoundationModels()  # Bedrock's catalogue: mark a model LEGACY here

    # ---------------------------------------------------------------- lifecycle
    # The stacks running in this process, by name: moto keeps one set of backends per process, and a
    # stack's physical names derive from its name (and seed), so a second stack of the same name
    # started beside the first would find the first one's tables, buckets and functions.
    _running: ClassVar[set[str]] = set()
    _running_lock: ClassVar[threading.Lock] = threading.Lock()

    def __enter__(self) -> LocalAWS:
        if self._exit is not None:
            raise RuntimeError("this LocalAWS is already running")
        with LocalAWS._running_lock:
            if self.stack_name in LocalAWS._running:
                raise RuntimeError(
                    f"a stack named {self.stack_name!r} is already running on the embedded AWS in this process: "
                    "moto keeps one set of backends per process and a stack's resources are named after it, "
                    "so this one's would collide with it; stop that one first or give this one another stack "
                    "name (in tests: a test with a stack of its own can't share a module, and so a worker, with a "
                    "module-scoped stack of the same name that is still up)"
                )
            LocalAWS._running.add(self.stack_name)
        try:
            return self._enter()
        except BaseException:
            with LocalAWS._running_lock:
                LocalAWS._running.discard(self.stack_name)
            raise

    def _enter(self) -> LocalAWS:
        from moto import mock_aws
        from moto.core.models import DEFAULT_ACCOUNT_ID

        exit_stack = contextlib.ExitStack()
        try:
            exit_stack.enter_context(
                mock.patch.dict(os.environ, {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region})
            )
            for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):  # would lead boto3 away from moto
                os.environ.pop(key, None)  # restored with the rest by patch.dict on exit
            self.account_id = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
            moto = mock_aws(config=MOTO_CONFIG)
            moto.start()
            exit_stack.callback(moto.stop)
            exit_stack.callback(setattr, boto3, "DEFAULT_SESSION", boto3.DEFAULT_SESSION)
            _default_session_with_shared_models()
            aws.reset_clients()
            exit_stack.callback(aws.reset_clients)
            signing_keys.clear_key_cache()  # signing keys are per stack
            exit_stack.callback(signing_keys.clear_key_cache)
            exit_stack.callback(self._clients.clear)
            exit_stack.callback(self._principals.clear)

            iam.forget_aws_managed()
            exit_stack.callback(iam.forget_aws_managed)
            if self.enforce_iam:
                enforcer = iam.Enforcer(account_id=self.account_id, region=self.region)
                enforcer.install()
                exit_stack.callback(self._stop_enforcing, enforcer)
                self.enforcer = enforcer
            # throttled SDK calls (faults.py), on every client created from here on
            self.sdk_faults = SdkFaultInjector()
            self.sdk_faults.install()
            exit_stack.callback(self.sdk_faults.uninstall)

            # nominal time starts now
            self.clock = JumpingClock(self.time_factor) if self.jump_when_idle else LoadSafeClock(self.time_factor)
            if isinstance(self.clock, JumpingClock):
                # This thread (the test, the demo) and every thread it or the stack starts
                # participate; the clock stops jumping after everything below is undone.
                exit_stack.enter_context(self.clock.running())
            exit_stack.callback(pipeline_clock.install(self.clock.datetime))
            integrations = _integrations(self.clock, self.metrics_delay_seconds)
            if isinstance(integrations.metrics_sink, LambdaMetricsPublisher):
                exit_stack.callback(integrations.metrics_sink.install())
            # Lambda's async retries (1 and 2 minutes apart on AWS) run on the scaled clock.
            runtime = LambdaRuntime(
                metrics_sink=integrations.metrics_sink,
                async_retry_delays=tuple(delay * self.time_factor for delay in ASYNC_RETRY_DELAYS_SECONDS),
                routing_seed=self.seed,
                work_in_progress=self.clock.hold,
                echo_logs=self.echo_logs,
            )
            runtime.install()
            exit_stack.callback(runtime.uninstall)
            self.runtime = runtime
            if isinstance(integrations.metrics_sink, LambdaMetricsPublisher):
                # metrics in functions' EMF log lines, extracted by CloudWatch Logs (emf.py)
                publisher, emf_delay = integrations.metrics_sink, self.emf_delay_seconds
                runtime.logs.emf_sink = lambda account, region, datums: publisher.put_datums(
                    account, region, datums, delay_seconds=emf_delay
                )

            exit_stack.callback(bedrock.install(self.foundation_models))  # GetFoundationModel (bedrock.py)
            exit_stack.enter_context(s3_policies.bucket_policy_conditions())
            # S3 stamps objects in nominal time and applies lifecycle expiration each midnight UTC (s3_lifecycle.py)
            exit_stack.enter_context(s3_lifecycle.nominal_timestamps(self.clock))
            self.s3_lifecycle = s3_lifecycle.LifecycleRunner(account_id=self.account_id, clock=self.clock)
            self.s3_lifecycle.start()
            exit_stack.callback(self.s3_lifecycle.stop)
            exit_stack.enter_context(s3_policies.signature_v2_refused())
            exit_stack.enter_context(dynamodb.serialised_requests())
            exit_stack.enter_context(serializer.cached_alias_search())  # moto's responses, faster (serializer.py)
            exit_stack.enter_context(sagemaker.model_registry_as_aws())
            exit_stack.enter_context(kms.digest_signing())
            self.aliases = lambda_aliases.AliasRecorder()  # a fresh history per start
            exit_stack.enter_context(lambda_aliases.revisions(self.aliases))
            # Bedrock batch inference (moto has none): jobs on this runtime's nominal clock.
            self.batch_inference = BatchInference(clock=self.clock, region=self.region, account_id=self.account_id)
            exit_stack.enter_context(self.batch_inference.installed())

            patches = sfn_patches.StepFunctionsPatches(
                self.time_factor,
                work_timeout_floor=self.work_timeout_floor,
                clock=self.clock,
                internal_callbacks=self.internal_callbacks,
            )
            patches.install()
            exit_stack.callback(patches.uninstall)
            # After the Lambda and Step Functions patches: the limit checks wrap them.
            exit_stack.enter_context(limits.enforced())
            exit_stack.enter_context(_action_names_remembered())

            if integrations.install_cloudwatch is not None:
                exit_stack.callback(integrations.install_cloudwatch())
            if integrations.install_events is not None:
                if self.enforcer is not None:
                    account = self.account_id
                    uninstall_events = integrations.install_events(
                        invoke_async=runtime.invoke_async, authorize=iam.authorize_event_target,
                        requester=lambda: iam.requester_account(account),
                    )
                else:
                    uninstall_events = integrations.install_events(invoke_async=runtime.invoke_async)
                exit_stack.callback(uninstall_events)

            self._stack = deploy(
                self.template_path,
                client=self.client,
                stack_name=self.stack_name,
                region=self.region,
                account_id=self.account_id,
                parameters=self.parameters,
                runtime=runtime,
                seed=self.seed,
            )
            for note in self._stack.notes:
                LOG.debug("deploy note: %s", note)

            # Runs before the patches are undone: executions and async invokes end first.
            exit_stack.callback(self._quiesce)
            # EventBridge Scheduler's schedules run on the same clock (scheduler.py); stopped before
            # the quiesce above runs (callbacks run last-in first-out), so none starts during it.
            schedules = ScheduleRunner(
                account_id=self.account_id, region=self.region, clock=self.clock, invoke_async=runtime.invoke_async,
                authorize=authorize_with_role if self.enforcer is not None else None,
            )
            self.schedules = schedules
            if self.run_schedules:
                schedules.start()
                exit_stack.callback(schedules.stop)
            if integrations.alarm_evaluator is not None:
                evaluator = integrations.alarm_evaluator(
                    account_id=self.account_id,
                    region=self.region,
                    clock=self.clock,
                    tick_seconds=self.alarm_tick_seconds,
                )
                evaluator.start()
                exit_stack.callback(evaluator.stop)
        except BaseException:
            exit_stack.close()
            self.runtime = None
            self._stack = None
            raise
        self._exit = exit_stack
        return self

    def __exit__(self, *exc_info: object) -> None:
        exit_stack, self._exit = self._exit, None
        try:
            if exit_stack is not None:
                exit_stack.close()
        finally:
            self._stack = None
            self.runtime = None
            with LocalAWS._running_lock:
                LocalAWS._running.discard(self.stack_name)

    def _stop_enforcing(self, enforcer: iam.Enforcer) -> None:
        enforcer.uninstall()
        iam.collect(enforcer, self)  # the session's least-privilege report reads these

    def _quiesce(self) -> None:
        """Stop running executions and wait for async invocations before unpatching."""
        try:
            sfn = self.client("stepfunctions")
            pages = sfn.get_paginator("list_executions")
            for machine in sfn.list_state_machines()["stateMachines"]:
                for page in pages.paginate(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"):
                    for execution in page["executions"]:
                        self._stop_execution(sfn, execution["executionArn"])
        finally:
            if self.runtime is not None and not self.runtime.wait_for_async(timeout=5.0):
                LOG.warning("asynchronous Lambda invocations still running at shutdown")

    @staticmethod
    def _stop_execution(sfn: Any, arn: str, attempts: int = 50) -> None:
        """Stop one execution. moto 5.2.1 fails (AttributeError on ``env.set_stop``) for an
        execution whose worker thread has not built its environment yet: retry briefly."""
        for _ in range(attempts):
            try:
                sfn.stop_execution(executionArn=arn, error="LocalAWS.Shutdown", cause="the local runtime stopped")
                return
            except AttributeError:
                time.sleep(0.02)
        LOG.warning("execution %s could not be stopped at shutdown", arn)

    # ---------------------------------------------------------------- public API
    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise RuntimeError("LocalAWS is not running: use it as a context manager")
        return self._stack

    def client(self, service: str, *, principal: str | None = None) -> Any:
        """A boto3 client inside the mock (cached per service and principal).

        Without ``principal`` its calls run as whoever calls (local-admin in test code);
        with one (``"ci"``, ``"approver"``, ``"operator"``) always as that principal.
        """
        key = f"{service}@{principal}" if principal else service
        if key not in self._clients:
            client = boto3.client(service, region_name=self.region)
            if principal is not None:
                iam.bind_client(client, self.principal(principal))
            self._clients[key] = client
        return self._clients[key]

    def principal(self, name: str) -> iam.Principal:
        """A named CLI principal: a role holding the template's managed policy for it.

        On AWS the README tells users which managed policy (a stack Output) to attach to
        which identity; locally a role ``<stack>-local-<name>`` is created with it.
        """
        if name in self._principals:
            return self._principals[name]
        output = CLI_PRINCIPALS.get(name)
        if output is None:
            raise ValueError(f"unknown principal {name!r}: one of {', '.join(sorted(CLI_PRINCIPALS))}")
        policy_arn = self.stack.outputs.get(output)
        if not policy_arn:
            raise ValueError(f"principal {name!r}: the template has no Output {output} (its managed policy)")
        iam_client = self.client("iam")
        role_name = f"{self.stack_name}-local-{name}"[:64]
        with iam.acting_as(iam.LOCAL_ADMIN):
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{self.account_id}:root"}, "Action": "sts:AssumeRole"}
                ],
            }
            try:
                role = iam_client.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
            except iam_client.exceptions.EntityAlreadyExistsException:
                role = iam_client.get_role(RoleName=role_name)["Role"]
            iam_client.attach_role_policy(RoleName=role_name, PolicyArn=policy_arn)
        principal = iam.role_principal(role["Arn"], f"modelgate-{name}")
        self._principals[name] = principal
        return principal

    @contextlib.contextmanager
    def acting_as(self, name: str | None) -> Iterator[iam.Principal | None]:
        """Run the block's calls (this thread and threads it starts) as a named principal."""
        if name is None:
            yield None
            return
        with iam.acting_as(self.principal(name)) as principal:
            yield principal

    def redeploy(
        self, template_path: str | os.PathLike[str] | None = None, *, parameters: Mapping[str, str] | None = None
    ) -> Stack:
        """Update the running stack from a changed template, as ``sam deploy`` does (a
        CloudFormation stack update: unchanged resources are left alone, changed ones updated
        in place, function code included). Parameters not given keep their values.
        See :func:`modelgate_emulator.template.redeploy`."""
        stack = redeploy(self.stack, template_path, client=self.client, parameters=parameters, runtime=self.runtime)
        for note in stack.notes[len(self.stack.notes):]:
            LOG.debug("redeploy note: %s", note)
        self._stack = stack
        self.template_path = stack.template_path
        self.parameters = {**self.parameters, **(parameters or {})}
        return stack

    def scale(self, nominal_seconds: float) -> float:
        """Real seconds for ``nominal_seconds`` of pipeline time."""
        return float(nominal_seconds) * self.time_factor

    def sleep(self, nominal_seconds: float) -> None:
        """Let ``nominal_seconds`` of pipeline time pass on the runtime's clock."""
        if nominal_seconds < 0:
            raise ValueError(f"cannot sleep {nominal_seconds} s")
        self.clock.sleep(nominal_seconds)

    def function_name(self, function: str) -> str:
        """Physical name for a logical id (a physical name or ARN passes through)."""
        try:
            return self.stack.function(function).function_name
        except KeyError:
            return function

    def invoke(self, function: str, event: Any, qualifier: str | None = None) -> Any:
        """Invoke through boto3 ``lambda.invoke`` (the real path, patches included).

        Returns the decoded payload; raises :class:`LambdaInvokeError` on a function error.
        """
        args: dict[str, Any] = {"FunctionName": self.function_name(function), "Payload": json.dumps(event).encode()}
        if qualifier is not None:
            args["Qualifier"] = qualifier
        response = self.client("lambda").invoke(**args)
        payload = _decode(response["Payload"].read())
        if response.get("FunctionError"):
            body = payload if isinstance(payload, dict) else {}
            raise LambdaInvokeError(
                str(body.get("errorType", response["FunctionError"])), str(body.get("errorMessage", payload)), body
            )
        return payload

    def invoke_function_url(self, function: str, event: Any, *, caller: iam.Principal | None = None) -> Any:
        """A request to the function's URL (``event`` in the Function URL payload format 2.0).

        As on AWS, an anonymous caller gets in only if the URL's auth type is NONE and the
        function's resource policy allows ``lambda:InvokeFunctionUrl`` to ``*`` with
        ``lambda:FunctionUrlAuthType`` NONE ("Control access to Lambda function URLs",
        Lambda Developer Guide); otherwise the URL answers 403 Forbidden.

        An ``AWS_IAM`` URL takes only a SigV4-signed request (here: ``caller``, else the
        thread's acting principal) whose identity policy allows ``lambda:InvokeFunctionUrl``
        (with ``lambda:FunctionUrlAuthType`` AWS_IAM) and, for URLs created since October 2025,
        ``lambda:InvokeFunction`` (with ``lambda:InvokedViaFunctionUrl`` true) on the function
        (same page). Lambda, not the caller, fills ``requestContext.authorizer.iam``
        (``accessKey``, ``accountId``, ``callerId``, ``userArn``, ``userId``: "Invoking Lambda
        function URLs", section "Request payload", Lambda Developer Guide): whatever the event
        carried there is replaced, so a caller can't claim another identity.
        """
        principal = caller or iam.current()
        name = self.function_name(function)
        with iam.acting_as(iam.LOCAL_ADMIN):  # the URL's own configuration, read by Lambda
            config = self.client("lambda").get_function_url_config(FunctionName=name)
        arn = self.stack.function(function).arn if function in self.stack.functions else config["FunctionArn"]
        event = dict(event)
        context = {k: v for k, v in dict(event.get("requestContext") or {}).items() if k != "authorizer"}
        if config["AuthType"] == "AWS_IAM":
            if self.enforcer is not None:
                try:
                    self.enforcer.check(
                        principal, "lambda:InvokeFunctionUrl", arn, context={"lambda:FunctionUrlAuthType": "AWS_IAM"}
                    )
                    self.enforcer.check(
                        principal, "lambda:InvokeFunction", arn, context={"lambda:InvokedViaFunctionUrl": "true"}
                    )
                except iam.AccessDenied:
                    return {"statusCode": 403, "body": json.dumps({"Message": "Forbidden"})}
            user_id = principal.arn.rsplit("/", 1)[-1]
            context["authorizer"] = {"iam": {
                "accessKey": "ASIALOCAL", "accountId": self.account_id, "callerId": user_id,
                "cognitoIdentity": None, "principalOrgId": None, "userArn": principal.arn, "userId": user_id,
            }}
        elif self.enforcer is not None:
            anonymous = iam.service_principal("*")
            try:
                self.enforcer.check(
                    anonymous, "lambda:InvokeFunctionUrl", arn, context={"lambda:FunctionUrlAuthType": "NONE"}
                )
            except iam.AccessDenied:
                return {"statusCode": 403, "body": json.dumps({"Message": "Forbidden"})}
        event["requestContext"] = context
        with iam.acting_as(iam.LOCAL_ADMIN):  # Lambda's URL service invokes, not the caller
            return self.invoke(name, event)

    def function_for_url(self, url: str) -> str | None:
        """The stack's function (logical id) whose Function URL is ``url`` (scheme and path ignored)."""
        host = urlsplit(url if "//" in url else f"https://{url}").netloc.lower()
        for logical_id, function in self.stack.functions.items():
            try:
                config = self.client("lambda").get_function_url_config(FunctionName=function.function_name)
            except ClientError:
                continue
            if urlsplit(config["FunctionUrl"]).netloc.lower() == host:
                return logical_id
        return None

    def call_function_url(
        self, url: str, body: bytes, headers: Mapping[str, str], *, method: str = "POST",
        caller: iam.Principal | None = None,
    ) -> tuple[int, bytes]:
        """An HTTP request to one of the stack's Function URLs, as ``caller`` (else the thread's
        acting principal, as if it had signed it): (status, body), as the URL answers.
        :meth:`invoke_function_url` builds on it; 404 for a URL the stack doesn't have."""
        caller = caller or iam.current()
        with iam.acting_as(iam.LOCAL_ADMIN):  # Lambda finds the URL's function, not the caller
            function = self.function_for_url(url)
        if function is None:
            return 404, json.dumps({"Message": f"no function URL {url} in the stack"}).encode()
        parts = urlsplit(url)
        host = parts.netloc
        event = {
            "version": "2.0", "routeKey": "$default", "rawPath": parts.path or "/", "rawQueryString": parts.query,
            "headers": {str(k).lower(): str(v) for k, v in {**headers, "host": host}.items()},
            "body": body.decode("utf-8", "replace"), "isBase64Encoded": False,
            "requestContext": {
                "accountId": self.account_id, "apiId": host.split(".", 1)[0], "domainName": host,
                "domainPrefix": host.split(".", 1)[0],
                "http": {"method": method.upper(), "path": parts.path or "/", "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": str(headers.get("User-Agent", "modelgate"))},
                "requestId": uuid.uuid4().hex, "routeKey": "$default", "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()), "timeEpoch": int(time.time() * 1000),
            },
        }
        try:
            answer = self.invoke_function_url(function, event, caller=caller)
        except LambdaInvokeError as exc:  # a function error is a 502 at the URL
            return 502, json.dumps({"Message": f"{exc}"}).encode()
        if not isinstance(answer, dict) or "statusCode" not in answer:
            return 200, json.dumps(answer).encode()
        out = answer.get("body") or ""
        return int(answer["statusCode"]), out.encode() if isinstance(out, str) else json.dumps(out).encode()

    def inject_fault(
        self, function: str, fault: Fault, *, attempts: Collection[int] = (), from_attempt: int | None = None
    ) -> str:
        """Make the given attempts of a function (logical id or name; 1 = its next synchronous
        invocation), or every attempt from ``from_attempt`` on, fail with ``fault``
        (:mod:`modelgate_emulator.faults`). Returns the function's physical name."""
        if self.runtime is None:
            raise RuntimeError("LocalAWS is not running")
        name = self.function_name(function)
        try:
            self.client("lambda").get_function(FunctionName=name)
        except ClientError as exc:
            raise ValueError(f"cannot inject a fault into {function!r}: no such function in the stack or account") from exc
        self.runtime.faults.inject(name, fault, attempts=attempts, from_attempt=from_attempt)
        return name

    def throttle_sdk(
        self, service: str, operation: str, *, times: int | None, function: str | None = None, error: str | None = None
    ) -> SdkThrottle:
        """Answer ``times`` SDK calls (None: every call) of ``service``'s ``operation`` made by
        ``function``'s handler (logical id or name; None: by anyone) with the service's throttling
        error (:class:`modelgate_emulator.faults.SdkThrottle`); the SDK's own retries count."""
        if self.runtime is None:
            raise RuntimeError("LocalAWS is not running")
        throttle = SdkThrottle.of(service, operation, times=times, error=error,
                                  function=self.function_name(function) if function else None)
        self.sdk_faults.inject(throttle)
        return throttle

    def invocations(self, function: str) -> list[InvocationRecord]:
        """Invocations of a function (logical id or name) so far, oldest first."""
        if self.runtime is None:
            raise RuntimeError("LocalAWS is not running")
        return self.runtime.invocations(self.function_name(function))

    def wait_for_execution(self, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
        return sfn_patches.wait_for_execution(self.client("stepfunctions"), execution_arn, timeout)

    def history_path(self, execution_arn: str) -> list[str]:
        return sfn_patches.history_path(self.client("stepfunctions"), execution_arn)


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


# ---------------------------------------------------------------------------- invoke
@dataclasses.dataclass(frozen=True)
class InvokeOutcome:
    """What ``modelgate invoke`` prints: the handler's result or the runtime-shaped error."""

    function_name: str
    executed_version: str
    payload: Any
    function_error: str | None
    log_lines: tuple[str, ...] = ()  # the function's log group after the call, as `sam local invoke` prints them

    @property
    def ok(self) -> bool:
        return self.function_error is None

    def to_json(self) -> str:
        return json.dumps(self.payload, indent=2, default=str)


def run_function(
    function: str,
    event_path: str | os.PathLike[str] | None = None,
    *,
    event: Any = None,
    template_path: str | os.PathLike[str] = "template.yaml",
    parameters: Mapping[str, str] | None = None,
    qualifier: str | None = None,
    stack_name: str = "modelgate-local",
    region: str = "us-east-1",
) -> InvokeOutcome:
    """The Docker-free twin of ``sam local invoke FUNCTION -e EVENT.json``.

    Deploys the stack into a fresh embedded AWS, runs that one function's handler with the
    environment the template gives it, and returns its result or the error exactly as the
    Lambda Python runtime shapes it (``function_error`` = "Unhandled").
    """
    if event_path is not None and event is not None:
        raise ValueError("pass event_path or event, not both")
    body = json.loads(Path(event_path).read_text(encoding="utf-8")) if event_path is not None else (event if event is not None else {})
    with LocalAWS(template_path, parameters=parameters, stack_name=stack_name, region=region, echo_logs=False) as local:
        name = local.function_name(function)
        args: dict[str, Any] = {"FunctionName": name, "Payload": json.dumps(body).encode()}
        if qualifier is not None:
            args["Qualifier"] = qualifier
        response = local.client("lambda").invoke(**args)
        return InvokeOutcome(
            function_name=name,
            executed_version=str(response.get("ExecutedVersion", "$LATEST")),
            payload=_decode(response["Payload"].read()),
            function_error=response.get("FunctionError"),
            log_lines=tuple(e["message"] for e in function_logs.read_events(local.client("logs"), name)),
        )


def invoke_event(
    function: str,
    event_path: str | os.PathLike[str] | None = None,
    *,
    event: Any = None,
    template_path: str | os.PathLike[str] = "template.yaml",
    parameters: Mapping[str, str] | None = None,
    qualifier: str | None = None,
) -> Any:
    """What ``modelgate invoke FUNCTION -e EVENT.json`` prints: the handler's result, or the
    runtime-shaped error payload (``errorType``, ``errorMessage``, ``requestId``,
    ``stackTrace``). :func:`run_function` returns the same with the executed version and
    the function-error flag."""
    return run_function(
        function, event_path, event=event, template_path=template_path, parameters=parameters, qualifier=qualifier
    ).payload
