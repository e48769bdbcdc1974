"""`modelgate eval`: the pipeline's evaluation and gate on a release folder, before upload.

What an engineer runs before pushing: the folder's manifest and prompts are checked the
way ``modelgate submit`` checks them (digests included), answered in process through the
same ``inference.answer`` the inference function uses, with the provider the manifest
names, and judged with the same ``evaluation.gate.evaluate_gate``. Optionally against another folder
(say, a checkout of what is live) on the same cases, so the numbers mean what the
pipeline's will.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from modelgate_harness.control import load_release_dir

from modelgate import inference
from modelgate.contract import GateVerdict
from modelgate.errors import ConfigurationError, DatasetInvalid, ManifestInvalid
from modelgate.evaluation.comparison import CANDIDATE, LIVE, EvaluationReport
from modelgate.evaluation.cost import check_budget, estimate_cost
from modelgate.evaluation.dataset import DatasetCase, parse_dataset
from modelgate.evaluation.gate import evaluate_gate
from modelgate.evaluation.model_scorers import ScoringModels
from modelgate.evaluation.power import PowerLine, plan_power
from modelgate.evaluation.runner import evaluate
from modelgate.policy import ReleasePolicy
from modelgate.providers import BedrockProvider, LocalProvider, ModelProvider


def default_provider(name: str) -> ModelProvider:
    """The provider a manifest names: LocalProvider for "local", Bedrock for "bedrock"."""
    if name == "local":
        return LocalProvider()
    if name == "bedrock":
        from modelgate.adapters import clients as aws

        return BedrockProvider(aws.client("bedrock-runtime"))
    raise ConfigurationError(f"no model provider {name!r} (known: local, bedrock)")


def release_invoker(
    release_dir: Path, provider_for: Callable[[str], ModelProvider]
) -> tuple[inference.LoadedRelease, Callable[[dict[str, str]], dict[str, Any]]]:
    """Load a release folder (digests verified) and an invoker answering with it in process."""
    manifest, files = load_release_dir(release_dir, commit=None, branch=None)
    release = inference.release_from_files(manifest, files, source=str(release_dir))
    provider = provider_for(manifest.model.provider)

    def invoke(inputs: dict[str, str]) -> dict[str, Any]:
        return inference.answer(release, inputs, provider)

    return release, invoke


def read_dataset(dataset: Path) -> list[DatasetCase]:
    try:
        text = dataset.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetInvalid(f"dataset {dataset} can't be read: {exc.strerror or exc}") from exc
    return parse_dataset(text)


def plan_local_eval(
    dataset: Path, *, policy: ReleasePolicy, live_accuracy: float | None, discordance: float | None = None
) -> list[PowerLine]:
    """``modelgate eval --plan``: the gate's power on this dataset, before any call
    (``modelgate.evaluation.power``: its assumptions are in each line)."""
    cases = read_dataset(dataset)
    return plan_power(
        [list(c.tags) for c in cases],
        policy,
        live_accuracy,
        judged_cases=sum(c.scorer == "llm_judge" for c in cases),
        discordance=discordance,
    )


def run_local_eval(
    release_dir: Path,
    dataset: Path,
    *,
    live_dir: Path | None = None,
    policy: ReleasePolicy,
    concurrency: int | None = None,
    providers: Mapping[str, ModelProvider] | None = None,
    scoring_models: ScoringModels | None = None,
    rate_limit: float | Literal["adaptive"] | None = None,
) -> tuple[EvaluationReport, GateVerdict]:
    """Evaluate ``release_dir`` (and ``live_dir`` on the same cases) and judge it.

    ``policy`` is the service's gate (the CLI reads it from the control plane or a file);
    ``concurrency`` defaults to the policy's. ``providers`` overrides the provider per
    manifest provider name (tests; a pre-configured Bedrock client). ``scoring_models``
    must be given if the dataset uses ``semantic`` or ``llm_judge`` (never guessed).
    Nothing is uploaded and no AWS resource of the stack is needed.
    """
    cases = read_dataset(dataset)

    def provider_for(name: str) -> ModelProvider:
        if providers is not None and name in providers:
            return providers[name]
        return default_provider(name)

    candidate, invoke_candidate = release_invoker(release_dir, provider_for)
    invokers = {CANDIDATE: invoke_candidate}
    if live_dir is not None:
        live, invoke_live = release_invoker(live_dir, provider_for)
        if live.manifest.service != candidate.manifest.service:
            raise ManifestInvalid(
                f"{live_dir} is a release of {live.manifest.service!r}, "
                f"{release_dir} of {candidate.manifest.service!r}: compare releases of one service"
            )
        invokers[LIVE] = invoke_live
    releases = {CANDIDATE: candidate, **({LIVE: live} if live_dir is not None else {})}
    if policy.max_cost_usd is not None:  # the pipeline's cost cap, before any call
        check_budget(estimate_cost(cases, releases, repeats=policy.repeats), policy.max_cost_usd)

    report = evaluate(
        cases,
        invokers,
        concurrency=concurrency or policy.eval_concurrency,
        rate_limit=rate_limit,
        scoring_models=scoring_models,
        repeats=policy.repeats,
    )
    return report, evaluate_gate(report, policy)


def plan_cost_lines(
    release_dir: Path, dataset: Path, *, live_dir: Path | None = None, policy: ReleasePolicy
) -> list[str]:
    """``modelgate eval --plan``'s cost lines: the evaluation's estimated cost per side and in all
    (``modelgate.evaluation.cost``), and whether the policy's ``max_cost_usd`` allows it. No call."""
    try:
        cases = parse_dataset(dataset.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetInvalid(f"dataset {dataset} can't be read: {exc.strerror or exc}") from exc
    releases = {CANDIDATE: load_release_folder(release_dir)}
    if live_dir is not None:
        releases[LIVE] = load_release_folder(live_dir)
    estimate = estimate_cost(cases, releases, repeats=policy.repeats)
    lines = estimate.lines()
    if policy.max_cost_usd is None:
        lines.append("max_cost_usd: not set (no cap)")
    elif estimate.usd > policy.max_cost_usd:
        lines.append(f"max_cost_usd ${policy.max_cost_usd:.4f}: OVER BUDGET, the pipeline would refuse it before any call")
    else:
        lines.append(f"max_cost_usd ${policy.max_cost_usd:.4f}: within budget")
    return lines


def load_release_folder(release_dir: Path) -> inference.LoadedRelease:
    """A release folder as the inference function would serve it (digests verified)."""
    manifest, files = load_release_dir(release_dir, commit=None, branch=None)
    return inference.release_from_files(manifest, files, source=str(release_dir))
