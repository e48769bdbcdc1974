"""Model lifecycle watch (scheduled, per service): is the Bedrock model live pins still ACTIVE?

The live version's pinned model is looked up (``models.lifecycle_status``); LEGACY is in the
journal and sets off the policy's ``on_model_legacy`` actions (an alert) while there is time
to move. Validate's side of it, refusing new releases that pin a LEGACY model, is
``models.refuse_legacy``.
"""

from __future__ import annotations

from modelgate.adapters import lambda_alias
from modelgate.errors import ConfigurationError
from modelgate.manifest import MAX_MANIFEST_BYTES, PIN_KEY, PIN_VERSION, Manifest
from modelgate.monitor.actions import act
from modelgate.monitor.journal import Journal
from modelgate.monitor.models import LEGACY, lifecycle_status
from modelgate.pipeline.deps import Deps
from modelgate.policy import managed_function_prefix
from modelgate.registry import get_service


def watch(deps: Deps, service: str) -> dict:
    """The live version's pinned model: its lifecycle state in the journal (kind ``lifecycle``),
    and the policy's ``on_model_legacy`` actions when it is LEGACY. Returns the journal entry."""
    config = get_service(
        deps.ssm, deps.settings.services_prefix, service, function_prefix=managed_function_prefix(deps.settings.stack_name)
    )
    journal = Journal(deps.ledger.table)
    version, _ = lambda_alias.alias_state(deps.lambda_, config.function_name, config.alias)
    env = lambda_alias.version_environment(deps.lambda_, config.function_name, version)
    if not env.get(PIN_KEY):
        return journal.append(service, "lifecycle", f"live version {version} pins no release: no model to watch",
                              live_version=version, status=None)
    raw = deps.read_artifact(env[PIN_KEY], env.get(PIN_VERSION), error=ConfigurationError,
                             what=f"model config live version {version} pins", max_bytes=MAX_MANIFEST_BYTES)
    manifest = Manifest.model_validate_json(raw)
    model = manifest.model.model_id
    if manifest.model.provider != "bedrock":
        return journal.append(service, "lifecycle",
                              f"{model} ({manifest.model.provider} provider) has no Bedrock lifecycle to watch",
                              live_version=version, model_id=model, status=None)
    status = lifecycle_status(deps.client("bedrock"), model)
    entry = journal.append(service, "lifecycle", f"{model} is {status} on Bedrock", live_version=version,
                           model_id=model, status=status)
    if status == LEGACY:
        entry["actions"] = act(deps, "model_legacy", service,
                               f"live version {version} pins {model}, which Bedrock lists as {LEGACY}: move to an "
                               "ACTIVE model before its end of life",
                               {"model_id": model, "status": status, "live_version": version})
    return entry
