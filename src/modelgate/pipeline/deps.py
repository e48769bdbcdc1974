"""What every stage needs: settings, the ledger and AWS clients made on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from modelgate.adapters import clients
from modelgate.adapters.s3 import read_object
from modelgate.contract import ReleaseContext
from modelgate.errors import ManifestInvalid
from modelgate.ledger import Ledger
from modelgate.settings import PipelineSettings, load

S = TypeVar("S", bound=PipelineSettings)


class Deps(NamedTuple, Generic[S]):
    """What a step needs: settings, the ledger, and clients made on first use from one
    factory (``clients.client`` in Lambda: cached, so a handler's cold start builds only
    the clients its step uses)."""

    settings: S
    client: Callable[[str], Any]
    ledger: Ledger

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def ssm(self) -> Any:
        return self.client("ssm")

    @property
    def lambda_(self) -> Any:
        return self.client("lambda")

    @property
    def cloudwatch(self) -> Any:
        return self.client("cloudwatch")

    @property
    def sfn(self) -> Any:
        return self.client("stepfunctions")

    @property
    def sns(self) -> Any:
        return self.client("sns")

    @property
    def sagemaker(self) -> Any:
        return self.client("sagemaker")

    @property
    def kms(self) -> Any:
        return self.client("kms")

    @property
    def secretsmanager(self) -> Any:
        return self.client("secretsmanager")

    def read_artifact(
        self, key: str, version: str | None, *, error: type[Exception], what: str, max_bytes: int
    ) -> bytes:
        """One (pinned) object of the artefact bucket, at most ``max_bytes`` (checked with
        HeadObject before reading); a failure is ``error`` naming it."""
        return read_object(
            self.s3, self.settings.artifact_bucket, key, version, error=error, what=what, max_bytes=max_bytes
        )


def default_deps(model: type[S] = PipelineSettings) -> Deps[S]:  # type: ignore[assignment]
    """Real AWS, with the function's settings (``model``) validated first."""
    settings = load(model)
    return Deps(settings, clients.client, Ledger(clients.table(settings.ledger_table)))


def target(ctx: ReleaseContext) -> tuple[str, str]:
    """(function name, alias) of the service the release targets, once validated."""
    if not ctx.function_name or not ctx.alias:
        raise ManifestInvalid(f"release {ctx.release_id} has no validated service target")
    return ctx.function_name, ctx.alias
