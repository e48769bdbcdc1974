"""Patches of moto's Step Functions interpreter for the local runtime, and test helpers.

moto 5.2.1 (``moto/stepfunctions/parser``, LocalStack's ASL interpreter) behaviour covered:
- every wait runs in real wall-clock time. Here waits run on the runtime's clock
  (``modelgate_emulator.clock``: nominal time, scaled by the TIME FACTOR and standing still
  while real work runs): Wait Seconds/SecondsPath/Timestamp/TimestampPath, callback
  TimeoutSeconds(Path), HeartbeatSeconds(Path), Retry intervals and the machine's
  TimeoutSeconds end when the clock reaches their deadline; scaled, never skipped. The
  history keeps the nominal numbers.
  The guard timeout of a task that does real work (a request-response Lambda call runs at
  real speed) is never scaled below ``min(nominal, work_timeout_floor)`` seconds, so a
  0.01 factor does not turn a 30 s Lambda task timeout into a spurious 0.3 s one; callback
  (``.waitForTaskToken``) timeouts and heartbeats are scaled without a floor.
- moto measures a Task state's ``TimeoutSeconds`` in real wall-clock seconds (an
  ``Event.wait`` around the task's worker thread). On AWS it bounds how long the task runs
  ("Task workflow state", TimeoutSeconds: the maximum time a task can run before it fails
  with ``States.Timeout``, https://docs.aws.amazon.com/step-functions/latest/dg/state-task.html),
  and a Lambda task runs as long as its function's code does. Locally real seconds measure
  the machine: on a loaded 2-core machine the CheckCanary task of a 9,000 s bake (its
  handler reading the bake's metrics, each query a scan of every stored datapoint in moto)
  ran past 60 real seconds and rolled a good release back with ``States.Timeout``. A Task
  state's time is now its *task time* (:class:`_TaskTime`): the handler time
  (``handler_time.py``: CPU time and deliberate waits) of the task's worker thread, which
  includes the handler time of the Lambda function it invokes, while its callback waits run
  on the clock as above. The guard on
  real seconds stays as a hang guard only (``handler_time.hang_guard_seconds``), as for a
  Lambda handler. Map and Parallel states keep the real-time guard.
- ``WaitFunction._wait_interval`` truncates the elapsed time to whole seconds and waits
  again for the remainder, so a fractional wait would never end: replaced.
- ``Timestamp`` waits compare a UTC timestamp with local naive ``datetime.now()``: the
  runtime clock's nominal UTC time is used (pipeline timestamps are nominal).
- ``SendTaskFailure`` drops ``cause`` (the response handler never reads it): passed on,
  so the ledger can say why a callback failed.
- heartbeat expiry fails the task with ``States.Timeout``; AWS reports
  ``States.HeartbeatTimeout``: fixed.
- an unnamed ``StartExecution`` is named "None" (a second one with the same input returns
  the first execution): a UUID name is generated, and names are validated like AWS does.
- ``StartExecution`` deep-copies the state machine, and with it its backend and every
  execution in it; once any execution exists the copy hits an ``RLock`` and fails
  ("cannot pickle '_thread.RLock' object"), so only the first execution of a process ever
  starts. The copy now takes the definition and settings and shares the backend, versions
  and aliases, without the executions (which is what the copy is for).
- a Distributed Map whose items fail succeeds anyway, with ``null`` for each failed item
  (``ToleratedFailureCount``/``Percentage`` are parsed and never checked). On AWS the Map
  Run fails with ``States.ExceedToleratedFailureThreshold`` once the failed items exceed the
  tolerated threshold, 0 by default ("Setting failure thresholds for Distributed Map states
  in Step Functions", https://docs.aws.amazon.com/step-functions/latest/dg/maprun-fail-threshold.html):
  checked here after the items ran.
- ``StopExecution`` marks the program stopped but a task waiting for its callback
  (``.waitForTaskToken``) keeps waiting until its timeout, so the execution stays RUNNING
  (a superseded release would hold on for its whole bake): stopping now wakes the
  execution's callback waits, and a state that fails because its execution was stopped
  runs no Catch and no failure (AWS runs nothing after StopExecution): it ends ABORTED.
- a Distributed Map's items run in process, as threads of the parent execution, with no API
  call, so IAM never saw them. On AWS each item is a child workflow execution that Step
  Functions starts with the state machine's role, which needs ``states:StartExecution`` on the
  state machine (plus ``states:DescribeExecution`` / ``states:StopExecution`` on its
  executions): "IAM policies for using Distributed Map states", Step Functions Developer Guide,
  https://docs.aws.amazon.com/step-functions/latest/dg/iam-policies-eg-dist-map.html. Each
  item's start is now authorised as ``states:StartExecution`` on the state machine ARN for
  the execution's principal (``iam.current()``: the state machine's role) while IAM is
  enforced. A denied start fails the Map Run, and with it the Map state, with ``States.Runtime``
  and IAM's AccessDenied message as the cause (AWS fails the execution at the Map state:
  serverless-step-functions#543; the error name it reports is not documented). The
  Describe/Stop grants stay unexercised: nothing here describes or stops a child.

Not a behaviour, a cost: moto lexes and parses the whole definition with ANTLR (pure Python,
about 0.3 s for the release pipeline) when a state machine is created and again for every
execution. The parse tree of each definition is kept per process (:func:`parse_definition`)
and only the cheap step that builds a fresh program from it runs each time, so no execution
shares a program object with another; a definition with syntax errors is never kept.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import threading
import time
import types
import uuid
from collections.abc import Callable, Collection, Iterator
from typing import Any
from unittest import mock

from modelgate_emulator import handler_time
from modelgate_emulator.clock import Clock, ScaledClock, observe

_POLL_SECONDS = 0.02
_MIN_REAL_WAIT = 0.002  # real seconds: the shortest re-check of a wait on the clock
# Fields of a moto state machine that a new execution's snapshot shares instead of copying.
_SHARED_STATE_MACHINE_FIELDS = frozenset({"backend", "versions", "latest_version", "aliases"})


_PARSE_TREES: dict[str, Any] = {}
_PARSE_TREES_LOCK = threading.Lock()
_PARSE_TREES_KEPT = 16


def parse_definition(definition: str) -> tuple[Any, Any]:
    """What ``AmazonStateLanguageParser.parse`` returns (a new program, the parse tree), with
    the ANTLR parse tree of each definition made once per process."""
    from antlr4 import CommonTokenStream, InputStream
    from moto.stepfunctions.parser.asl.antlr.runtime.ASLLexer import ASLLexer
    from moto.stepfunctions.parser.asl.antlr.runtime.ASLParser import ASLParser
    from moto.stepfunctions.parser.asl.parse.asl_parser import ASLParserException, SyntaxErrorListener
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    with _PARSE_TREES_LOCK:
        tree = _PARSE_TREES.get(definition)
    if tree is None:
        listener = SyntaxErrorListener()
        parser = ASLParser(CommonTokenStream(ASLLexer(InputStream(definition))))
        parser.removeErrorListeners()
        parser.addErrorListener(listener)
        tree = parser.state_machine()
        if listener.errors:
            raise ASLParserException(errors=listener.errors)
        with _PARSE_TREES_LOCK:
            _PARSE_TREES[definition] = tree
            while len(_PARSE_TREES) > _PARSE_TREES_KEPT:
                _PARSE_TREES.pop(next(iter(_PARSE_TREES)))
    return Preprocessor().visit(tree), tree


class StepFunctionsPatches:
    """Installs the patches above; ``uninstall()`` restores moto exactly."""

    def __init__(
        self,
        time_factor: float,
        *,
        work_timeout_floor: float = math.inf,
        clock: Clock | None = None,
        internal_callbacks: Collection[str] = (),
    ) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor must be > 0: waits are scaled, never skipped")
        self.time_factor = time_factor
        self.work_timeout_floor = work_timeout_floor
        # Task states whose task token the stack itself answers (or the timeout ends): their
        # callback waits are timers a JumpingClock may jump; any other callback is external.
        self.internal_callbacks = frozenset(internal_callbacks)
        self._callback_state = threading.local()
        # What "now" is for a Wait until a Timestamp: the runtime's nominal time.
        self.clock: Clock = clock if clock is not None else ScaledClock(time_factor)
        self._stack: contextlib.ExitStack | None = None

    def scale(self, nominal_seconds: float | None) -> float | None:
        return None if nominal_seconds is None else max(0.0, float(nominal_seconds)) * self.time_factor

    def install(self) -> None:
        if self._stack is not None:
            return
        stack = contextlib.ExitStack()
        try:
            for target, attribute, value in self._patches():
                stack.enter_context(mock.patch.object(target, attribute, value, create=not hasattr(target, attribute)))
        except BaseException:
            stack.close()
            raise
        self._stack = stack

    def uninstall(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def __enter__(self) -> StepFunctionsPatches:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # ------------------------------------------------------------------ the patches
    def _patches(self) -> list[tuple[Any, str, Any]]:
        from moto.core.responses import EmptyResult
        from moto.stepfunctions.models import StateMachineInstance
        from moto.stepfunctions.parser.api import (
            HistoryEventType,
            MapRunFailedEventDetails,
            TaskTimedOutEventDetails,
        )
        from moto.stepfunctions.parser.asl.component.common.catch.catch_outcome import (
            CatchOutcome,
        )
        from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
            FailureEvent,
            FailureEventException,
        )
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
            StatesErrorName,
        )
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
            StatesErrorNameType,
        )
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
        from moto.stepfunctions.parser.asl.component.program.program import Program
        from moto.stepfunctions.parser.asl.component.state.exec import execute_state
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (
            DistributedItemProcessorWorker,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
            StateTaskService,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
            StateTaskServiceCallback,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import (
            StateTask,
        )
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.timestamp import (
            Timestamp,
        )
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
            WaitFunction,
        )
        from moto.stepfunctions.parser.asl.eval.callback.callback import (
            CallbackEndpoint,
            HeartbeatEndpoint,
            HeartbeatTimeoutError,
        )
        from moto.stepfunctions.parser.asl.eval.environment import Environment
        from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
        from moto.stepfunctions.parser.models import StepFunctionsParserBackend
        from moto.stepfunctions.parser.utils import TMP_THREADS
        from moto.stepfunctions.responses import StepFunctionResponse

        patches = self
        factor = self.time_factor

        # --- waits -----------------------------------------------------------------
        clock = self.clock

        def wait_interval(wait_function: Any, env: Any, wait_seconds: float) -> None:
            deadline = clock.now() + max(0.0, float(wait_seconds))
            while env.is_running():
                remaining = deadline - clock.now()
                if remaining <= 0:
                    return
                # pulsed on stop/failure; the clock may stand still meanwhile: look again
                env.program_state_event.wait(min(max(clock.real_seconds(remaining), _MIN_REAL_WAIT), 1.0))

        def timestamp_wait_seconds(wait_function: Any, env: Any) -> float:
            wait_function.string.eval(env=env)
            timestamp_str = env.stack.pop()
            parsed = wait_function._from_timestamp_string(timestamp=timestamp_str)
            if parsed is None:
                raise FailureEventException(wait_function._create_failure_event(env, timestamp_str))
            now = patches.clock.datetime().replace(tzinfo=None)  # parsed is naive UTC
            seconds: float = (parsed - now).total_seconds()
            return seconds

        # --- task timeouts ------------------------------------------------------------
        class ScaledEvent(threading.Event):
            """The Event ExecutionState waits on for a task to finish within TimeoutSeconds."""

            def __init__(self) -> None:
                super().__init__()
                self._task: _TaskTime | None = getattr(_task_state, "starting", None)

            def wait(self, timeout: float | None = None) -> bool:
                if timeout is None:
                    return super().wait()
                limit = max(float(timeout) * factor, min(float(timeout), patches.work_timeout_floor))
                with clock.blocked_on(self.is_set):  # the state's own thread does the work
                    if self._task is None:  # Map, Parallel: real seconds
                        return super().wait(limit)
                    return self._task.wait(self, limit)

        def task_thread(*args: Any, **kwargs: Any) -> threading.Thread:
            """``Thread`` in moto's execute_state: a Task state's worker counts its task time."""
            task, _task_state.starting = getattr(_task_state, "starting", None), None
            thread = threading.Thread(*args, **kwargs)
            if task is not None:
                thread.run = task.counting(thread.run)  # type: ignore[method-assign]
            return thread

        original_evaluate_with_timeout = execute_state.ExecutionState._evaluate_with_timeout

        def evaluate_with_timeout(state: Any, env: Any) -> None:
            # Read by the ScaledEvent and the worker thread that moto creates next, in this thread.
            _task_state.starting = _TaskTime() if isinstance(state, StateTask) else None
            try:
                original_evaluate_with_timeout(state, env)
            finally:
                _task_state.starting = None

        threading_for_execute_state = types.SimpleNamespace(**{k: getattr(threading, k) for k in dir(threading) if not k.startswith("__")})
        threading_for_execute_state.Event = ScaledEvent

        def external_callback() -> bool:
            return getattr(patches._callback_state, "name", None) not in patches.internal_callbacks

        def callback_wait(endpoint: Any, timeout: float | None = None) -> Any:
            with _TaskTime.callback_wait():  # on the clock, which ends it: not task time
                clock.wait(endpoint._notify_event, None if timeout is None else float(timeout), external=external_callback())
            return endpoint._outcome

        def heartbeat_clear_and_wait(endpoint: Any) -> bool:
            with endpoint._mutex:
                if endpoint._next_heartbeat_event.is_set():
                    endpoint._next_heartbeat_event.clear()
                    return True
            with _TaskTime.callback_wait():
                return clock.wait(endpoint._next_heartbeat_event, float(endpoint._heartbeat_seconds), external=external_callback())

        original_wait_for_task_token = StateTaskServiceCallback._eval_wait_for_task_token

        def eval_wait_for_task_token(state: Any, *args: Any, **kwargs: Any) -> Any:
            patches._callback_state.name = state.name  # which state's callback the waits below are
            try:
                return original_wait_for_task_token(state, *args, **kwargs)
            finally:
                patches._callback_state.name = None

        # --- retry intervals -----------------------------------------------------------
        time_for_retrier = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("__")})
        time_for_retrier.sleep = lambda seconds: clock.sleep(max(0.0, float(seconds)))

        # --- machine timeout -----------------------------------------------------------
        def program_eval(program: Any, env: Any) -> None:
            timeout = program.timeout_seconds.timeout_seconds if program.timeout_seconds else None
            env.next_state_name = program.start_at.start_at_name
            worker = threading.Thread(target=EvalComponent.eval, args=(program, env), daemon=True)
            TMP_THREADS.append(worker)
            worker.start()
            clock.wait(_Joined(worker), None if timeout is None else float(timeout))
            if worker.is_alive():
                env.set_timed_out()

        # --- heartbeat error name --------------------------------------------------------
        original_from_error = StateTask._from_error

        def from_error(state: Any, env: Any, ex: Exception) -> Any:
            if isinstance(ex, HeartbeatTimeoutError):
                details = TaskTimedOutEventDetails(error=StatesErrorNameType.StatesHeartbeatTimeout.to_name())
                if isinstance(state, StateTaskService):
                    details["resourceType"] = state._get_sfn_resource_type()
                    details["resource"] = state._get_sfn_resource()
                return FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesHeartbeatTimeout),
                    event_type=HistoryEventType.TaskTimedOut,
                    event_details=EventDetails(taskTimedOutEventDetails=details),  # type: ignore[typeddict-item]  # as moto builds it
                )
            return original_from_error(state, env, ex)

        # --- SendTaskFailure cause ---------------------------------------------------------
        def send_task_failure(response: Any) -> Any:
            backend = response.stepfunction_backend
            task_token = response._get_param("taskToken")
            error = response._get_param("error")
            cause = response._get_param("cause")
            if isinstance(backend, StepFunctionsParserBackend):
                backend.send_task_failure(task_token, error=error, cause=cause)
            else:
                backend.send_task_failure(task_token, error=error)
            return EmptyResult()

        # --- Distributed Map children start as the state machine's role ---------------------
        original_eval_job = DistributedItemProcessorWorker._eval_job

        def eval_distributed_job(worker: Any, env: Any, job: Any) -> None:
            denial = _child_start_denied(env)
            if denial is None:
                original_eval_job(worker, env, job)
                return
            worker._map_run_record.item_counter.total.count()
            worker._map_run_record.item_counter.failed.count()
            job.job_output = FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesRuntime),
                    event_type=HistoryEventType.MapRunFailed,
                    event_details=EventDetails(
                        mapRunFailedEventDetails=MapRunFailedEventDetails(
                            error=StatesErrorNameType.StatesRuntime.to_name(), cause=denial
                        )
                    ),
                )
            )

        # --- unnamed executions ------------------------------------------------------------
        original_start_execution = StepFunctionsParserBackend.start_execution

        def start_execution(backend: Any, state_machine_arn: str, name: str | None = None, execution_input: Any = None, trace_header: Any = None) -> Any:
            if name is None:
                name = str(uuid.uuid4())
            else:
                backend._validate_name(name)
            return original_start_execution(backend, state_machine_arn, name, execution_input, trace_header)

        # --- state machine snapshot for a new execution ------------------------------------
        def state_machine_deepcopy(machine: Any, memo: dict[int, Any]) -> Any:
            clone = object.__new__(type(machine))
            memo[id(machine)] = clone
            for key, value in machine.__dict__.items():
                if key == "executions":
                    setattr(clone, key, [])
                elif key in _SHARED_STATE_MACHINE_FIELDS:
                    setattr(clone, key, value)
                else:
                    setattr(clone, key, copy.deepcopy(value, memo))
            return clone

        # --- StopExecution while a callback task waits ------------------------------------
        original_set_stop = Environment.set_stop

        def set_stop(env: Any, stop_date: Any, cause: Any, error: Any) -> None:
            original_set_stop(env, stop_date, cause, error)
            for endpoint in list(env.callback_pool_manager._pool.values()):
                endpoint.interrupt_all()

        # The woken task fails (as a timeout); after a stop no Catch or failure may follow.
        original_handle_catch = execute_state.ExecutionState._handle_catch
        original_handle_uncaught = execute_state.ExecutionState._handle_uncaught

        def handle_catch(state: Any, env: Any, failure_event: Any) -> None:
            if not env.is_running():
                env.stack.append(CatchOutcome.Caught)
                return
            original_handle_catch(state, env, failure_event)

        def handle_uncaught(state: Any, env: Any, failure_event: Any) -> None:
            if not env.is_running():
                return
            original_handle_uncaught(state, env, failure_event)

        # --- Distributed Map: failed items fail the Map Run ------------------------------
        from moto.stepfunctions.parser.api import ExecutionFailedEventDetails
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
            DistributedIterationComponent,
        )

        original_map_run = DistributedIterationComponent._map_run

        def map_run(component: Any, env: Any, eval_input: Any) -> None:
            original_map_run(component, env, eval_input)
            record = eval_input.map_run_record
            failed, total = record.item_counter.failed.get(), record.item_counter.total.get()
            if not exceeds_tolerated_failures(
                failed, total, record.tolerated_failure_count, record.tolerated_failure_percentage
            ):
                return
            env.stack.pop()  # the items' outputs: the Map Run failed instead
            name = StatesErrorNameType.StatesExceedToleratedFailureThreshold
            raise FailureEventException(
                failure_event=FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=name),
                    event_type=HistoryEventType.ExecutionFailed,
                    event_details=EventDetails(
                        executionFailedEventDetails=ExecutionFailedEventDetails(
                            error=name.to_name(),
                            cause=f"The specified tolerated failure threshold was exceeded: {failed} of {total} items failed",
                        )
                    ),
                )
            )

        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

        return [
            (AmazonStateLanguageParser, "parse", staticmethod(parse_definition)),
            (DistributedIterationComponent, "_map_run", map_run),
            (Environment, "set_stop", set_stop),
            (execute_state.ExecutionState, "_handle_catch", handle_catch),
            (execute_state.ExecutionState, "_handle_uncaught", handle_uncaught),
            (StateMachineInstance, "__deepcopy__", state_machine_deepcopy),
            (WaitFunction, "_wait_interval", wait_interval),
            (Timestamp, "_get_wait_seconds", timestamp_wait_seconds),
            (execute_state, "threading", threading_for_execute_state),
            (execute_state, "Thread", task_thread),
            (execute_state.ExecutionState, "_evaluate_with_timeout", evaluate_with_timeout),
            (CallbackEndpoint, "wait", callback_wait),
            (StateTaskServiceCallback, "_eval_wait_for_task_token", eval_wait_for_task_token),
            (HeartbeatEndpoint, "clear_and_wait", heartbeat_clear_and_wait),
            (retrier_decl, "time", time_for_retrier),
            (Program, "eval", program_eval),
            (StateTask, "_from_error", from_error),
            (StepFunctionResponse, "send_task_failure", send_task_failure),
            (StepFunctionsParserBackend, "start_execution", start_execution),
            (DistributedItemProcessorWorker, "_eval_job", eval_distributed_job),
        ]


def _child_start_denied(env: Any) -> str | None:
    """IAM's message if the execution's principal may not start a Distributed Map child
    execution of its state machine (``states:StartExecution`` on the state machine ARN); None
    when allowed or when IAM is not enforced."""
    from modelgate_emulator import iam

    enforcer = iam.active()
    if enforcer is None:
        return None
    state_machine_arn = str(env.states.context_object.context_object_data["StateMachine"]["Id"])
    try:
        enforcer.check(iam.current(), "states:StartExecution", state_machine_arn)
    except iam.AccessDenied as denied:
        return str(denied)
    return None


_task_state = threading.local()  # starting: the _TaskTime of the Task state this thread evaluates; task: a worker's


class _TaskTime:
    """How long one Task state's work has run, counted so that machine load does not stretch it.

    The worker thread moto starts for the state counts as one invocation's handler time
    (``handler_time.Meter``): its CPU time, its deliberate waits, and the handler time of
    each Lambda function it invokes synchronously (``handler_time.waiting_for``), so a
    busy machine that leaves it waiting for a CPU or the GIL adds nothing, as it adds
    nothing to a Lambda handler's time. Its callback waits (``.waitForTaskToken``,
    heartbeats) run on the runtime's clock, which ends them at their nominal timeout: they
    are not task time, and not hang time either.
    """

    def __init__(self) -> None:
        self.meter = handler_time.Meter()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._waited = 0.0  # real seconds in callback waits that ended
        self._waiting_since: float | None = None

    def counting(self, run: Callable[[], None]) -> Callable[[], None]:
        """``run`` (the worker thread's) counting for this task."""

        def run_counted() -> None:
            _task_state.task = self
            try:
                with self.meter.counting():
                    run()
            finally:
                _task_state.task = None

        return run_counted

    @staticmethod
    @contextlib.contextmanager
    def callback_wait() -> Iterator[None]:
        """The calling thread waits for a callback on the clock (if it is a task's worker)."""
        task: _TaskTime | None = getattr(_task_state, "task", None)
        if task is None:
            yield
            return
        since = time.monotonic()
        with task._lock:
            task._waiting_since = since
        try:
            yield
        finally:
            with task._lock:
                task._waited += time.monotonic() - since
                task._waiting_since = None

    def elapsed(self) -> tuple[float, float]:
        """(task seconds, real seconds outside callback waits) so far."""
        now = time.monotonic()
        with self._lock:
            waited = self._waited + (now - self._waiting_since if self._waiting_since is not None else 0.0)
        return self.meter.elapsed(), max(0.0, now - self._started - waited)

    def wait(self, done: threading.Event, limit: float) -> bool:
        """Wait until ``done`` is set (True) or the task time reaches ``limit`` seconds (False); a
        task that gains no task time (blocked on something that never happens) ends after the
        hang guard's real seconds outside callback waits."""
        guard = handler_time.hang_guard_seconds(limit)
        wait_real = threading.Event.wait
        while True:
            used, real = self.elapsed()
            if used >= limit or real >= guard:
                return done.is_set()
            # Task time and real time outside callback waits grow at most as fast as real time.
            if wait_real(done, max(min(limit - used, guard - real), handler_time.MIN_POLL_SECONDS)):
                return True


class _Joined:
    """A thread seen as an event that is set when the thread has ended (for Clock.wait)."""

    def __init__(self, thread: threading.Thread) -> None:
        self._thread = thread

    def is_set(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.is_set()


# ---------------------------------------------------------------------- helpers
def wait_for_execution(sfn_client: Any, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll DescribeExecution until the execution is no longer RUNNING; return its description.

    Raises TimeoutError naming the execution and its last entered state otherwise.
    """
    deadline = time.monotonic() + timeout
    observation = observe()  # a jumping clock waits for this loop to see each change
    while True:
        with observation.poll():
            description: dict[str, Any] = sfn_client.describe_execution(executionArn=execution_arn)
        if description["status"] != "RUNNING":
            return description
        if time.monotonic() >= deadline:
            path = history_path(sfn_client, execution_arn)
            raise TimeoutError(
                f"execution {execution_arn} still RUNNING after {timeout} s (last state: {path[-1] if path else 'none'})"
            )
        observation.found_nothing(_POLL_SECONDS)


def exceeds_tolerated_failures(failed: int, total: int, tolerated_count: int | None, tolerated_percentage: float | None) -> bool:
    """Whether a Distributed Map Run's failed items exceed its thresholds (both default 0: any
    failed item fails the Map Run). Each threshold given on its own is honoured; with both
    set, the run fails once both are exceeded."""
    if failed <= 0 or total <= 0:
        return False
    return failed > (tolerated_count or 0) and 100.0 * failed / total > (tolerated_percentage or 0.0)


def execution_history(sfn_client: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every history event of an execution, oldest first (all pages)."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn}
    while True:
        page = sfn_client.get_execution_history(**kwargs)
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events
        kwargs["nextToken"] = token


def history_path(sfn_client: Any, execution_arn: str) -> list[str]:
    """Names of the states the execution entered, in order (its path through the machine)."""
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in execution_history(sfn_client, execution_arn)
        if "stateEnteredEventDetails" in event
    ]


def failure_of(sfn_client: Any, execution_arn: str) -> dict[str, str] | None:
    """The (error, cause) of the last failed task or execution event, parsed for tests."""
    for event in reversed(execution_history(sfn_client, execution_arn)):
        for key in ("taskFailedEventDetails", "taskTimedOutEventDetails", "executionFailedEventDetails"):
            if key in event:
                details = event[key]
                return {"error": details.get("error", ""), "cause": details.get("cause", "")}
    return None


def decode_cause(cause: str) -> Any:
    """A Lambda task's cause is the function's error payload as JSON; decode when it is."""
    try:
        return json.loads(cause)
    except ValueError:
        return cause
