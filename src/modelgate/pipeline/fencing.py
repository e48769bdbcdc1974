"""Fencing: a release changes the live alias and its canary alarms only while it holds its
service's lease, and a canceller undoes what an in-flight task still does after losing it.

The lease (``Ledger.acquire_lock``) names its holder and a generation; the release carries
both (``ReleaseContext.lease_generation``). Stopping an execution does not stop a Lambda
invocation it started ("StopExecution": the execution stops, a running task's work is not
undone; https://docs.aws.amazon.com/step-functions/latest/apireference/API_StopExecution.html),
so whoever cancels a release first takes its lease over (one conditional write), and the
cancelled release's task, still running, finds the lease gone:

- an alias move is ``lambda_alias.fenced_update``: lease check, UpdateAlias conditional on the
  RevisionId read, lease check again, undone if the lease moved meanwhile;
- alarms are named in the ledger first (so a canceller can find them), created after a lease
  check, and deleted again if the lease moved meanwhile (``put_alarms``);
- a promotion is recorded in one transaction with the lease check (``Ledger.record(lease=)``),
  so a cancelled release can't end Promoted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from modelgate.adapters import alarms, lambda_alias
from modelgate.contract import ReleaseContext
from modelgate.errors import LeaseLost
from modelgate.lease import Lease
from modelgate.ledger import FINAL_STATUSES
from modelgate.pipeline.deps import Deps

if TYPE_CHECKING:
    from modelgate.alarm_thresholds import AlarmThreshold


class Fence(NamedTuple):
    """The lease one owner (a release, or an operator's manual rollback) acts under."""

    deps: Deps
    lease: Lease

    def holds(self) -> bool:
        return self.deps.ledger.holds_lease(self.lease)

    def check(self, what: str) -> None:
        """LeaseLost, naming who holds the lease now, unless it is still ours."""
        if not self.holds():
            raise LeaseLost(self.lost(what))

    def lost(self, what: str) -> str:
        holder = self.deps.ledger.lock_holder(self.lease.service)
        return (
            f"{self.lease.owner} no longer holds the lease of {self.lease.service} "
            f"(held by {holder or 'nobody'}): {what} not done"
        )

    def move_alias(
        self, function_name: str, alias: str, target: lambda_alias.AliasTarget, what: str
    ) -> lambda_alias.AliasChange:
        """The alias to ``target(version, weights)``, fenced (``lambda_alias.fenced_update``)."""
        return lambda_alias.fenced_update(
            self.deps.lambda_, function_name, alias, target, holds_lease=self.holds, what=f"{self.lease.owner}: {what}"
        )


def fence_of(deps: Deps, ctx: ReleaseContext) -> Fence:
    """The release's own fence: the lease AcquireLock took for it."""
    return Fence(deps, Lease(ctx.service, ctx.release_id, ctx.lease_generation))


def put_alarms(fence: Fence, ctx: ReleaseContext, thresholds: list[AlarmThreshold]) -> list[str]:
    """The release's canary alarms, fenced: their names go in the ledger first (a canceller
    deletes what the ledger names), then the lease check, the alarms and their owners; if the
    lease moved meanwhile, the alarms are deleted again and LeaseLost is raised."""
    deps = fence.deps
    assert ctx.policy is not None and ctx.candidate_version
    fn, alias = ctx.function_name or "", ctx.alias or ""
    names = [alarms.canary_alarm_name(deps.settings.stack_name, ctx.release_id, s) for s in ctx.policy.canary_alarms]
    deps.ledger.set_fields(ctx.release_id, canary_alarms=names)
    fence.check("creating the canary alarms")
    alarms.put_canary_alarms(
        deps.cloudwatch,
        stack_name=deps.settings.stack_name,
        release_id=ctx.release_id,
        function_name=fn,
        alias=alias,
        candidate=ctx.candidate_version,
        specs=ctx.policy.canary_alarms,
        thresholds=thresholds,
        service=ctx.service,
    )
    for name in names:
        deps.ledger.put_alarm_owner(name, ctx.release_id, ctx.service)
    if not fence.holds():
        delete_alarms(deps, names)
        raise LeaseLost(fence.lost("creating the canary alarms") + "; the alarms it created are deleted again")
    return names


def delete_alarms(deps: Deps, names: list[str]) -> None:
    """Delete canary alarms and forget who owned them (idempotent). A release may always
    delete its own alarms: they are named after it, and nobody else's depend on them."""
    alarms.delete_alarms(deps.cloudwatch, names)
    for name in names:
        deps.ledger.delete_alarm_owner(name)


def delete_if_orphaned(deps: Deps, alarm_name: str, owner: dict) -> str | None:
    """A canary alarm whose release ended and holds no lease is an orphan (its task was cut
    off between creating it and deleting it again, e.g. by its Lambda timeout): deleted,
    and why is returned; None when the alarm still belongs to a release in flight."""
    release_id, service = str(owner.get("release_id")), str(owner.get("service"))
    record = deps.ledger.get(release_id) or {}
    status = record.get("status")
    if status not in FINAL_STATUSES or deps.ledger.lock_holder(service) == release_id:
        return None
    delete_alarms(deps, [alarm_name])
    return f"release {release_id} ended {status} and holds no lease: its alarm is deleted"


def describe(state: lambda_alias.AliasState) -> str:
    """"version 3" or "version 3 + 10.00% to 4"."""
    version, weights = state
    return f"version {version}" + "".join(f" + {w:.2%} to {v}" for v, w in weights.items())
