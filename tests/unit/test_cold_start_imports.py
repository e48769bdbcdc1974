"""What a handler's cold start imports (issue #7): guards of the wins, never timings.

Each handler module is imported in a fresh interpreter, as the Lambda runtime does (the
function's folder first on ``sys.path``, then the layer's package), and the test looks at
``sys.modules`` afterwards: a heavy module that only some handler needs must not come back
into the others' cold start through an innocent-looking import. bench/cold_start.py measures
the cost; these tests only hold the import graph to what was measured.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
# Each handler module: "<folder>" for functions/<folder>/app.py, "<folder>/<module>" for a folder
# that gives each of its functions its own module (batch evaluation's three steps).
HANDLERS = sorted(
    p.parent.name if p.stem == "app" else f"{p.parent.name}/{p.stem}" for p in FUNCTIONS.glob("*/*.py")
)

# Powertools' event_handler package imports every resolver it has (AppSync and asyncio,
# Bedrock agents, OpenAPI); parser.models.s3 builds all sixteen S3 event models. cryptography
# (its Rust bindings and cffi) verifies attestations, which no handler does on every call: KMS
# signs for Attest, and Validate loads it only for a stage that requires an upstream attestation.
NO_HANDLER_IMPORTS = (
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities.parser.models.s3",
    "asyncio",
    "cryptography",
    # A release's record read back (Ledger.release): the lock take-over and supersede paths' and the CLI's.
    "modelgate.release_record",
)
# The evaluation stack (the dataset parser, every scorer, the runner, the report, the gate)
# belongs to the evaluation steps that use it: pipeline.evaluation imports it inside
# plan_evaluation / evaluate_shard / gate, and the approval page's metrics come from
# evaluation.comparison, which needs none of it. Each evaluation step's handler imports at init
# the part that every one of its calls runs (a Lambda's first invoke is part of its cold start:
# never moved there to flatter bench/cold_start.py), and no other part.
EVALUATION_STACK = (
    "modelgate.evaluation.dataset",
    "modelgate.evaluation.scorers",
    "modelgate.evaluation.model_scorers",
    "modelgate.evaluation.results",
    "modelgate.evaluation.comparison",
    "modelgate.evaluation.judges",
    "modelgate.evaluation.runner",
    "modelgate.evaluation.report",
    "modelgate.evaluation.gate",
)


# What a handler imports when the code path that needs it runs, not at cold start:
# - the monitor does one task per invocation: the re-evaluation (and the comparison report
#   models it builds) only for "reevaluate", the lifecycle watch only for "lifecycle";
# - a monitoring rollback action is the only user of the pipeline's outcome code (the ledger
#   chain, lease and fencing) outside the pipeline's own end steps: the monitor loads it when a
#   policy rolls back (the drift check never does: it asks the monitor to act);
# - the approval mail's metrics line (evaluation.comparison) is RequestApproval's, not the
#   approval links' or the IAM decision's.
VALIDATE_ONLY = (
    "modelgate.registry",
    "modelgate.approval.identity",
    "modelgate.pipeline.model_registry",
    "modelgate.pipeline.upstream",
)
DEFERRED = {
    "monitor": (
        "modelgate.monitor.baseline",  # task baseline's (the event's request model: monitor.baseline_request)
        "modelgate.monitor.drift",
        "modelgate.monitor.reevaluation",
        "modelgate.monitor.lifecycle",
        "modelgate.evaluation.comparison",
        "modelgate.pipeline.outcome",
        "modelgate.chain",
    ),
    "drift_check": ("modelgate.pipeline.outcome", "modelgate.chain", "modelgate.evaluation.comparison"),
    "approval_decision": ("modelgate.evaluation.comparison",),
    "approval_callback": ("modelgate.evaluation.comparison",),
    "attest": ("modelgate.evaluation.comparison", "modelgate.pipeline.outcome"),
    # The end steps share pipeline.outcome: the drift baseline is Promote's (its handler loads it),
    # the take-over of a lock, the chain and the registration are the manual rollback's.
    "rollback": ("modelgate.monitor.baseline", "modelgate.pipeline.candidate", "modelgate.chain", "modelgate.registry"),
    "record_outcome": ("modelgate.monitor.baseline", "modelgate.pipeline.candidate", "modelgate.chain"),
    # Promote asks for the drift baseline (monitor.baseline_request); the monitor builds it.
    "promote": ("modelgate.pipeline.candidate", "modelgate.chain", "modelgate.monitor.baseline", "modelgate.monitor.drift"),
    # The prompt templates' check (the inference module, its providers) is Validate's alone, as
    # are the registration, the upload's author, the registry group and upstream
    # checks; the chain and the registry mirror are a supersede's (pipeline.candidate).
    "acquire_lock": ("modelgate.inference", "modelgate.providers") + VALIDATE_ONLY + ("modelgate.chain",),
    "publish_candidate": ("modelgate.inference", "modelgate.providers") + VALIDATE_ONLY + ("modelgate.chain",),
    "intake": ("modelgate.chain",),  # a refused upload's
    # Pricing each side's release (inference, providers, pricing) is a budget's (max_cost_usd), and
    # PlanEvaluation names the sides without the result models (evaluation.comparison, judges).
    "plan_evaluation": ("modelgate.inference", "modelgate.providers", "modelgate.pricing"),
    # The local model's tokeniser (providers) is the local scoring models' alone (off AWS).
    "evaluate": ("modelgate.providers", "modelgate.inference"),
    # A release is read and its prompts rendered without a model provider: the inference function
    # passes its own (providers), so Validate and SubmitBatch load inference without it.
    "validate": ("modelgate.providers",),
    "batch_evaluation": ("modelgate.providers",),
    "batch_evaluation/poll_batch": ("modelgate.inference", "modelgate.evaluation.dataset"),
}

# pydantic evaluates every string annotation of a model's fields at class creation (it compiles
# and evaluates each one); without ``from __future__ import annotations`` the annotations are
# already objects. The modules whose models every pipeline handler builds at import stay so.
MODEL_MODULES = (
    "canary_judge.py",
    "evaluation/results.py",  # the evaluation steps' results (EvaluateShard, SubmitBatch, the reduces, Gate)
    "evaluation/dataset.py",  # the dataset's cases and the scorers' options (the steps that parse a dataset)
    "evaluation/scorers.py",
    "evaluation/model_scorers.py",
    "inference.py",  # a release's prompt pin and the inference request (Validate, SubmitBatch, the function)
    "evaluation/power.py",  # Gate's report
    "monitor/baseline_request.py",  # Promote's
    "approval/links.py",  # the approval links' claims (RequestApproval, the callback)
    "evaluation/comparison.py",  # the report's models (ReduceEvaluation, ReduceBatch, Gate)
    "evaluation/judges.py",
    "chain.py",
    "contract.py",
    "ledger.py",
    "release_data.py",  # the fields every task records (built at import)
    "judge_policy.py",
    "alarm_thresholds.py",
    "release_record.py",
    "manifest.py",
    "monitor/baseline.py",  # the drift check's every call: the baseline and its drift profile
    "monitor/drift.py",
    "monitor/policy.py",
    "policy.py",
    "rollout.py",
    "settings.py",
    "upload_metadata.py",
)


@pytest.mark.parametrize("module", MODEL_MODULES)
def test_the_shared_model_modules_have_no_postponed_annotations(module: str) -> None:
    tree = ast.parse((ROOT / "src" / "modelgate" / module).read_text())
    future = [
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "__future__"
        for alias in node.names
    ]
    assert "annotations" not in future, f"src/modelgate/{module} postpones its annotations again"


# Models built at their first validation (defer_build), not at import: after a handler's cold
# import that never validates them, pydantic has not completed them.
DEFERRED_MODELS = (
    "modelgate.settings.PromoteSettings",
    "modelgate.settings.PipelineSettings",
    "modelgate.release_record.ReleaseRecord",
    "modelgate.policy.ServiceConfig",
    "modelgate.contract.CallbackEvent",
    "modelgate.contract.ShardEvent",
)


def test_models_a_handler_does_not_validate_are_not_built_at_its_cold_start() -> None:
    check = (
        "import importlib\n"
        "built = []\n"
        f"for path in {DEFERRED_MODELS!r}:\n"
        "    module, name = path.rsplit('.', 1)\n"
        "    if getattr(importlib.import_module(module), name).__pydantic_complete__: built.append(path)\n"
        "assert built == [], built\n"
        "from modelgate.ledger import ReleaseFields\n"
        "assert ReleaseFields.__pydantic_complete__  # every task that records validates it: built at import\n"
    )
    cold_import("intake", then=check)


# Handlers whose every call reads the service's registration (registry.get_service): Validate checks the
# upload against it, the drift check reads the policy, the monitor writes the dashboard after each task.
# ServiceConfig is deferred for the others, so these build it at init, not on their first call.
@pytest.mark.parametrize("handler", ["validate", "drift_check", "monitor"])
def test_a_handler_that_reads_the_registration_on_every_call_builds_it_at_init(handler: str) -> None:
    cold_import(handler, then="from modelgate.policy import ServiceConfig\nassert ServiceConfig.__pydantic_complete__\n")


# Parts of the release context that nothing validates, constructs or dumps on its own
# (modelgate.model_base.Nested in the manifest and the policy, the judge's and the monitoring policy): compiled inline
# into their parent's schema and never built by themselves, neither at a handler's cold start
# nor on the call that validates the context and returns it (their defaults are validated by
# the parent's schema: validate_default). So no handler's first call pays what its cold start
# no longer does.
NESTED_MODELS = (
    "modelgate.manifest.ModelSpec",
    "modelgate.manifest.InferenceParameters",
    "modelgate.manifest.PromptFile",
    "modelgate.manifest.SourceInfo",
    "modelgate.policy.LiveRelativeThreshold",
    "modelgate.policy.CanaryAlarmSpec",
    "modelgate.policy.SliceCriteria",
    "modelgate.policy.EvaluationMode",
    "modelgate.policy.ModelRegistryPolicy",
    "modelgate.judge_policy.JudgePolicy",
    "modelgate.monitor.policy.ReevaluationPolicy",
    "modelgate.monitor.policy.CapturePolicy",
    "modelgate.monitor.policy.DriftPolicy",
    "modelgate.monitor.policy.MonitoringPolicy",
)
# A policy that names every nested section, and one that names none (all defaults).
FULL_POLICY = {
    "slices": {"security": {"max_accuracy_drop": 0.0}},
    "model_registry": {"group": "modelgate-dev-support"},
    "evaluation": {"mode": "auto"},
    "judge": {"max_extensions": 1},
    "canary_alarms": [
        {"name": "errors", "metric": "Errors", "threshold": 1},
        {"name": "latency", "metric": "Duration", "statistic": "p95",
         "relative_to_live": {"factor": 2.0, "floor_ms": 100}},
    ],
    "monitoring": {"capture": {"enabled": True}, "drift": {"enabled": True}, "reevaluation": {"min_cases": 5}},
}


# The evaluation stack's models and patterns that only some datasets use: each scorer's options
# (validated for the lines naming that scorer), the Bedrock judge's reply, the graded answers
# (compiled into DatasetCase's schema, never built alone), and the text scorers' regexes
# (compiled on their scorer's first use). Neither PlanEvaluation's nor EvaluateShard's cold start
# builds them; a dataset naming them does, on the call that parses it.
EVALUATION_ON_USE = (
    "modelgate.evaluation.scorers.ScorerOptions",
    "modelgate.evaluation.scorers.NumericOptions",
    "modelgate.evaluation.scorers.RefusalOptions",
    "modelgate.evaluation.model_scorers.SemanticOptions",
    "modelgate.evaluation.model_scorers.JudgeOptions",
    "modelgate.evaluation.model_scorers.Grade",
    "modelgate.evaluation.dataset.GradedAnswer",
)


@pytest.mark.parametrize("handler", ["plan_evaluation", "evaluate"])
def test_the_evaluation_steps_build_a_scorers_models_when_a_dataset_uses_it(handler: str) -> None:
    check = (
        "import importlib, json\n"
        "from modelgate import refusal\n"
        "from modelgate.evaluation import dataset, scorers\n"
        "def built():\n"
        "    out = []\n"
        f"    for path in {EVALUATION_ON_USE!r}:\n"
        "        module, name = path.rsplit('.', 1)\n"
        "        if getattr(importlib.import_module(module), name).__pydantic_complete__: out.append(path)\n"
        "    return out\n"
        "assert built() == [] and scorers._compiled.cache_info().currsize == 0, built()\n"
        "assert refusal.compiled.cache_info().currsize == 0\n"
        "lines = [{'id': 'n', 'inputs': {'q': 'x'}, 'expected': 4, 'scorer': 'numeric', 'options': {'tolerance': 1}},\n"
        "         {'id': 'r', 'inputs': {'q': 'x'}, 'expected': True, 'scorer': 'refusal'},\n"
        "         {'id': 'j', 'inputs': {'q': 'x'}, 'expected': 'y', 'scorer': 'llm_judge',\n"
        "          'graded_answers': [{'output': 'y', 'grade': 1.0}]}]\n"
        "cases = dataset.parse_dataset('\\n'.join(json.dumps(line) for line in lines))\n"
        "assert scorers.SCORERS['numeric']('about 4.5', cases[0]) == 1.0\n"
        "assert scorers.SCORERS['refusal'](\"I can't help with that\", cases[1]) == 1.0\n"
        "assert cases[2].graded_answers[0].grade == 1.0\n"
        "assert set(built()) == {'modelgate.evaluation.scorers.NumericOptions',\n"
        "    'modelgate.evaluation.scorers.RefusalOptions', 'modelgate.evaluation.model_scorers.JudgeOptions'}, built()\n"
        "assert scorers._compiled.cache_info().currsize == 1  # the number's pattern\n"
        "assert refusal.compiled.cache_info().currsize == 1  # and the refusal's\n"
    )
    cold_import(handler, then=check)


@pytest.mark.parametrize(("handler", "event"), [("check_canary", "baked.json"), ("gate", "evaluated.json")])
def test_nested_parts_of_the_context_are_built_neither_at_cold_start_nor_on_a_call(handler: str, event: str) -> None:
    path = ROOT / "events" / handler / event
    check = (
        "import importlib, json\n"
        "from modelgate.contract import ReleaseContext\n"
        "from modelgate.policy import ReleasePolicy, ServiceConfig\n"
        f"NESTED = {NESTED_MODELS!r}\n"
        "def built():\n"
        "    out = []\n"
        "    for path in NESTED:\n"
        "        module, name = path.rsplit('.', 1)\n"
        "        if getattr(importlib.import_module(module), name).__pydantic_complete__: out.append(path)\n"
        "    return out\n"
        "assert built() == [], ('at import', built())\n"
        f"event = json.loads(open({str(path)!r}).read())\n"
        "assert event['policy'] and event['manifest']\n"
        f"for policy in (event['policy'], {FULL_POLICY!r}, {{}}):\n"
        "    ctx = ReleaseContext.model_validate({**event, 'policy': policy})\n"
        "    ctx.policy.judge_policy(); ctx.policy.step_plan()\n"
        "    assert ReleaseContext.model_validate(json.loads(json.dumps(ctx.dump()))) == ctx\n"
        "assert ctx.policy == ReleasePolicy() and ctx.policy.judge.max_extensions == 2\n"
        "assert [a.name for a in ctx.policy.canary_alarms] == ['errors'] and not ctx.policy.monitoring.drift.enabled\n"
        "assert built() == [], ('on a call', built())\n"
        "ServiceConfig.model_validate({'service': 's', 'function_name': 'f', 'dataset_key': 'd', 'policy': {}})\n"
        "assert built() == [], ('reading a registration', built())\n"
    )
    cold_import(handler, then=check)


def cold_import(handler: str, then: str = "") -> set[str]:
    """The modules in ``sys.modules`` after importing the handler's module (``app`` unless the handler
    names another: "<folder>/<module>") and the code ``then``, in a fresh interpreter."""
    folder, _, module = handler.partition("/")
    program = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(FUNCTIONS / folder)!r}, {str(ROOT / 'src')!r}]\n"
        f"import {module or 'app'}\n"
        f"{then}\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_", "POWERTOOLS_"))}
    env.update(AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", POWERTOOLS_SERVICE_NAME="modelgate")
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    assert result.returncode == 0, f"importing functions/{handler}/app.py failed:\n{result.stderr}"
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.fixture(scope="module")
def imported() -> dict[str, set[str]]:
    return {handler: cold_import(handler) for handler in HANDLERS}


@pytest.mark.parametrize("handler", HANDLERS)
def test_no_handler_imports_what_it_does_not_use(handler: str, imported: dict[str, set[str]]) -> None:
    heavy = sorted(m for m in imported[handler] if m.startswith(NO_HANDLER_IMPORTS))
    assert heavy == [], f"functions/{handler} imports {heavy} at cold start"


def test_the_inference_function_loads_at_init_what_every_request_runs(imported: dict[str, set[str]]) -> None:
    # Every served request's answer is checked for a refusal (the Refusals metric): the check is
    # loaded and its patterns compiled at init, and the request path imports nothing of the
    # evaluation stack (it used to import evaluation.scorers, all the scorers' models, on the
    # first request: a cold start the bench did not see)
    assert "modelgate.refusal" in imported["inference"]
    assert not [m for m in imported["inference"] if m.startswith("modelgate.evaluation")]
    tree = ast.parse((FUNCTIONS / "inference" / "app.py").read_text())
    deferred = [node.module for func in ast.walk(tree) if isinstance(func, ast.FunctionDef)
                for node in ast.walk(func) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in deferred if (m or "").startswith("modelgate.evaluation")], deferred
    # (the patterns were compiled by the import: the program fails otherwise)
    cold_import("inference", then="from modelgate import refusal\nassert refusal.compiled.cache_info().currsize == 1")


# Powertools' parser package (beyond pydantic: pydantic.networks, importlib.metadata, the
# middleware factory, a TypeAdapter per model) only where an event comes in one of its
# EventBridge envelopes; every other handler validates its event with its model's own
# validator (modelgate.lambda_event).
PARSER = "aws_lambda_powertools.utilities.parser"
ENVELOPED = ("intake", "on_alarm")


@pytest.mark.parametrize("handler", [h for h in HANDLERS if h not in ENVELOPED])
def test_only_enveloped_events_import_the_powertools_parser(handler: str, imported: dict[str, set[str]]) -> None:
    parser = sorted(m for m in imported[handler] if m == PARSER or m.startswith(PARSER + "."))
    assert parser == [], f"functions/{handler} imports {parser} at cold start"


# The canary judge's verdict models and the alarm thresholds' (modelgate.canary_judge,
# modelgate.alarm_thresholds) are built by the steps that arm or judge a canary (pipeline.canary,
# which the lock, supersede and end paths share); ReleaseFields checks a recorded verdict or
# threshold against them, loading them then. The canary steps record one on every call: loaded at
# init. No other handler builds them at its cold start.
CANARY_MODULES = ("modelgate.canary_judge", "modelgate.alarm_thresholds")
EVERY_CALL_CANARY = ("check_canary", "shift_traffic", "start_bake")
CANARY_PATHS = {*EVERY_CALL_CANARY, "send_synthetic", "on_alarm", "acquire_lock", "publish_candidate", "validate",
                "promote", "record_outcome", "rollback"}


@pytest.mark.parametrize("handler", [h for h in HANDLERS if h not in CANARY_PATHS])
def test_only_the_canary_paths_load_the_verdict_and_threshold_models(handler: str, imported: dict) -> None:
    loaded = sorted(m for m in imported[handler] if m in CANARY_MODULES)
    assert loaded == [], f"functions/{handler} imports {loaded} at cold start"


# The upload's metadata and CI's evaluation in it (modelgate.upload_metadata): Validate reads them on every
# call and records CI's evaluation; ReleaseFields loads the module to check a recorded one.
@pytest.mark.parametrize("handler", [h for h in HANDLERS if h != "validate"])
def test_only_validate_loads_the_upload_metadata(handler: str, imported: dict) -> None:
    assert "modelgate.upload_metadata" not in imported[handler]
    assert "modelgate.upload_metadata" in imported["validate"]


@pytest.mark.parametrize("handler", EVERY_CALL_CANARY)
def test_a_canary_step_loads_the_verdict_and_threshold_models_at_init(handler: str, imported: dict) -> None:
    assert set(CANARY_MODULES) <= imported[handler]


_DATASET = ("modelgate.evaluation.dataset", "modelgate.evaluation.scorers", "modelgate.evaluation.model_scorers")
# One call's result and the judge's checks (what EvaluateShard and SubmitBatch record), and the report
# with its statistics over them (what the reduce steps build and Gate reads).
_CASE_RESULTS = ("modelgate.evaluation.results", "modelgate.evaluation.judges")
_RESULTS = (*_CASE_RESULTS, "modelgate.evaluation.comparison")
EVERY_CALL_EVALUATION = {
    "plan_evaluation": _DATASET,  # the dataset parsed and checked, the batch plan decided
    # its shard's cases run and their results recorded (ReduceEvaluation builds the one report)
    "evaluate": (*_DATASET, *_CASE_RESULTS, "modelgate.evaluation.runner"),
    "reduce_evaluation": _RESULTS,  # the shards' results merged into one report
    # judged, the HTML report written
    "gate": (*_RESULTS, "modelgate.evaluation.gate", "modelgate.evaluation.report"),
    # SubmitBatch: the cases parsed, each side's records built, the latency sample run (its results only);
    # ReduceBatch: the cases parsed, the jobs' answers scored and reported. PollBatch reads job states only.
    "batch_evaluation": (*_DATASET, *_CASE_RESULTS, "modelgate.evaluation.runner", "modelgate.evaluation.batch"),
    "batch_evaluation/reduce_batch": (*_DATASET, *_RESULTS, "modelgate.evaluation.runner", "modelgate.evaluation.batch"),
}


@pytest.mark.parametrize("handler", HANDLERS)
def test_no_handler_imports_the_evaluation_stack_at_cold_start(handler: str, imported: dict[str, set[str]]) -> None:
    own = EVERY_CALL_EVALUATION.get(handler, ())
    loaded = sorted(m for m in imported[handler] if m in EVALUATION_STACK and m not in own)
    assert loaded == [], f"functions/{handler} imports {loaded} at cold start"


@pytest.mark.parametrize("handler", sorted(EVERY_CALL_EVALUATION))
def test_an_evaluation_step_imports_at_init_what_every_call_runs(handler: str, imported: dict[str, set[str]]) -> None:
    missing = sorted(set(EVERY_CALL_EVALUATION[handler]) - imported[handler])
    assert missing == [], f"functions/{handler} would import {missing} on its first call"


@pytest.mark.parametrize("handler", sorted(DEFERRED))
def test_a_handler_defers_what_only_one_of_its_paths_needs(handler: str, imported: dict[str, set[str]]) -> None:
    loaded = sorted(m for m in imported[handler] if m in DEFERRED[handler])
    assert loaded == [], f"functions/{handler} imports {loaded} at cold start"


# A deferred import fails only when its path runs: each must resolve from the handler's
# cold start (the same sys.path) and bring what that path needs.
EMPTY_PEM = "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----"
DEFERRED_PATHS = [
    (
        "acquire_lock",
        "from modelgate.pipeline.candidate import upload_author\nassert upload_author({}, None, four_eyes=False) is None",
        "modelgate.approval.identity",
    ),

    ("monitor", "from modelgate.monitor import reevaluation", "modelgate.evaluation.comparison"),
    ("monitor", "from modelgate.monitor import lifecycle, actions", "modelgate.monitor.lifecycle"),
    ("monitor", "from modelgate.monitor.baseline import build_for_release", "modelgate.monitor.drift"),
    ("monitor", "from modelgate.pipeline.outcome import rollback_service", "modelgate.pipeline.fencing"),
    (
        "evaluate",
        (
            "from modelgate.evaluation.model_scorers import LocalScoringModels\n"
            "assert LocalScoringModels().similarity('reset a password', 'password reset') == 1.0"
        ),
        "modelgate.providers",
    ),
    (
        "attest",
        f"from modelgate.attestation import load_public_keys\ntry: load_public_keys({EMPTY_PEM!r})\nexcept ValueError: pass",
        "cryptography.hazmat.primitives.asymmetric.ec",
    ),
]


def _function_level_imports() -> list[tuple[str, int, str, str]]:
    """(module file, line, module, name) of every ``from modelgate... import name`` inside a function."""
    found = []
    for path in sorted((ROOT / "src" / "modelgate").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelgate"):
                    found += [(path.name, node.lineno, node.module, alias.name) for alias in node.names]
    return found


def test_every_deferred_import_in_the_package_resolves() -> None:
    # An import inside a function runs only on that function's path: a renamed module or name
    # would fail there, in production, not at import. Each must name something that exists.
    imports = _function_level_imports()
    assert len(imports) > 10, "the scan found no deferred imports: it reads nothing"
    missing = []
    for file, line, module, name in imports:
        loaded = importlib.import_module(module)
        submodule = hasattr(loaded, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None
        if not hasattr(loaded, name) and not submodule:
            missing.append(f"{file}:{line}: from {module} import {name}")
    assert missing == []


@pytest.mark.parametrize(("handler", "path", "needs"), DEFERRED_PATHS)
def test_a_deferred_path_imports_what_it_needs(handler: str, path: str, needs: str, imported: dict) -> None:
    assert needs not in imported[handler]
    assert needs in cold_import(handler, then=path)


def test_the_approval_mail_loads_no_result_model() -> None:
    # Every RequestApproval call writes the mail with each side's metrics line
    # (modelgate.evaluation.format_side), from the summary in the context: no report model.
    event = ROOT / "events" / "request_approval" / "waiting.json"
    check = (
        "import json, sys\n"
        "from modelgate.approval.page import approval_message\n"
        "from modelgate.contract import ReleaseContext\n"
        f"ctx = ReleaseContext.model_validate(json.loads(open({str(event)!r}).read())['release'])\n"
        "assert ctx.evaluation is not None and 'accuracy ' in approval_message(ctx)\n"
    )
    modules = cold_import("request_approval", then=check)
    assert not modules & set(EVALUATION_STACK), sorted(modules & set(EVALUATION_STACK))


def test_the_guard_sees_a_module_a_handler_imports() -> None:
    # The guards above are only worth something if cold_import reports what a handler loads.
    modules = cold_import("intake")
    assert {"app", "boto3", "pydantic", "modelgate.pipeline.intake"} <= modules
    assert "aws_lambda_powertools.utilities.parser.models.event_bridge" in modules
