"""Fencing under interleavings (src/modelgate/lease.py, adapters/lambda_alias.fenced_update,
pipeline/fencing.py): the lease, conditional status writes, and fenced alias updates.

Every interleaving is driven deterministically: a hook runs the competing step at the
exact point of a call (a botocore ``before-call`` handler on the ledger's client, or the
embedded AWS's UpdateAlias hook), never a sleep. The embedded AWS's alias RevisionIds
(modelgate_emulator.lambda_aliases) are on for the alias tests: moto alone ignores them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from modelgate_emulator.lambda_aliases import AliasRecorder, AliasUpdate, revisions

from modelgate.adapters.lambda_alias import AliasState, canary_state, fenced_update
from modelgate.errors import AliasConflict, LeaseLost, ReleaseClosed, ServiceLocked
from modelgate.lease import Lease
from modelgate.ledger import Ledger
from modelgate.pipeline.candidate import cancel_release
from modelgate.pipeline.fencing import Fence
from modelgate.pipeline.outcome import promote

FUNCTION = "test-svc-support-bot"
OLDER, NEWER = "support-bot-older-1", "support-bot-newer-2"


@pytest.fixture
def ledger(ledger_table) -> Ledger:
    return Ledger(ledger_table)


@pytest.fixture
def aliases(world) -> Iterator[AliasRecorder]:
    with revisions() as recorder:
        yield recorder


def on_ledger_call(world, operation: str, action: Callable[[], None], *, times: int = 1) -> Callable[[], None]:
    """Run ``action`` just before the ledger's next ``operation`` request is sent (once)."""
    client = world.ledger.table.meta.client
    left = [times]

    def handler(model: Any, **_: Any) -> None:
        if model.name == operation and left[0] > 0:
            left[0] -= 1
            action()

    client.meta.events.register("before-call.dynamodb", handler)
    return lambda: client.meta.events.unregister("before-call.dynamodb", handler)


# ---------------------------------------------------------------------- the lease
def test_the_generation_goes_up_when_the_lease_changes_hands_only(ledger):
    first = ledger.acquire_lock("svc", "r1", 3600)
    assert ledger.acquire_lock("svc", "r1", 3600) == first  # the holder again (a retried task): same lease
    taken = ledger.take_over_lock("svc", "r1", "r2", 3600)
    assert taken == first + 1
    assert ledger.holds_lease(Lease("svc", "r2", taken))
    assert not ledger.holds_lease(Lease("svc", "r1", first))
    assert not ledger.holds_lease(Lease("svc", "r2", first))  # the holder, but not that lease
    with pytest.raises(ServiceLocked, match="moved from r1 to r2"):
        ledger.take_over_lock("svc", "r1", "r3", 3600)


def test_a_cancel_owed_outlives_the_owner_that_owed_it(ledger):
    # Given r2 took the lease over from r1, then r3 took it from r2 before r2 cancelled r1
    ledger.acquire_lock("svc", "r1", 3600)
    ledger.take_over_lock("svc", "r1", "r2", 3600)
    ledger.take_over_lock("svc", "r2", "r3", 3600)
    # Then both cancels are owed, and releasing the lock keeps them for the next holder
    assert ledger.owed_cleanups("svc") == ["r1", "r2"]
    assert ledger.release_lock("svc", "r3")
    assert ledger.lock_holder("svc") is None
    generation = ledger.acquire_lock("svc", "r4", 3600)
    assert ledger.owed_cleanups("svc") == ["r1", "r2"] and generation == 4
    ledger.cleanup_done("svc", "r4", "r1")
    ledger.cleanup_done("svc", "r4", "r2")
    assert ledger.owed_cleanups("svc") == []
    assert ledger.release_lock("svc", "r4")
    assert ledger.lease("svc") is None


# ---------------------------------------------------------------------- final statuses
def test_a_late_status_write_after_a_concurrent_supersede_is_refused(world):
    # Given a release in its canary, and its task about to record its next status
    world.ledger.record(OLDER, "Canary", "step 1")
    # When the supersede lands between that task's read and its write
    undo = on_ledger_call(world, "UpdateItem", lambda: world.ledger.record(OLDER, "Superseded", "by a newer one"))
    try:
        with pytest.raises(ReleaseClosed, match="already ended Superseded; not recording Baking"):
            world.ledger.record(OLDER, "Baking", "bake armed")
    finally:
        undo()
    # Then the final status stays: the condition is part of the write, not a check before it
    record = world.ledger.get(OLDER)
    assert record["status"] == "Superseded"
    assert [h["status"] for h in record["history"]] == ["Canary", "Superseded"]


def test_a_promotion_is_recorded_only_under_the_lease(world):
    generation = world.ledger.acquire_lock("support-bot", OLDER, 3600)
    world.ledger.record(OLDER, "Watching", "100%")
    world.ledger.take_over_lock("support-bot", OLDER, NEWER, 3600)
    with pytest.raises(LeaseLost, match=f"does not hold the lease of support-bot \\(held by {NEWER}\\)"):
        world.ledger.record(OLDER, "Promoted", "done", lease=Lease("support-bot", OLDER, generation))
    assert world.ledger.get(OLDER)["status"] == "Watching"


def test_a_promote_overtaken_by_a_supersede_leaves_live_to_the_superseder(world, aliases):
    # Given an older release in its post-promotion watch: the alias wholly on its candidate (2)
    world.service_function()
    world.ledger.receive(OLDER, "uploaded", service="support-bot", commit="c0ffee0",
                         artifact={"bucket": "artefacts", "key": "k", "version_id": "v"})
    candidate = world.publish(OLDER)
    world.deps.lambda_.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=candidate)
    generation = world.ledger.acquire_lock("support-bot", OLDER, 3600)
    world.ledger.record(OLDER, "Watching", "100%", function_name=FUNCTION, alias="live", live_version="1",
                        candidate_version=candidate)
    ctx = world.context(OLDER, live_version="1", candidate_version=candidate, lease_generation=generation)

    # When a newer release takes the lease over and cancels it while Promote runs, after
    # Promote's alias update and before its Promoted record
    def supersede() -> None:
        generation = world.ledger.take_over_lock("support-bot", OLDER, NEWER, 3600)
        fence = Fence(world.deps, Lease("support-bot", NEWER, generation))
        cancel_release(world.deps, OLDER, "Superseded", f"superseded by {NEWER}", fence=fence)

    undo = on_ledger_call(world, "TransactWriteItems", supersede)
    try:
        with pytest.raises(LeaseLost):
            promote(world.deps, ctx)
    finally:
        undo()
    # Then the older release is superseded, not promoted, and live is back on the version before it
    assert world.ledger.get(OLDER)["status"] == "Superseded"
    assert world.alias() == ("1", {})
    assert world.ledger.lock_holder("support-bot") == NEWER


# ---------------------------------------------------------------------- fenced alias updates
@pytest.fixture
def live(world, aliases) -> list[str]:
    """Version 1 live, versions 2 and 3 published; the older release holds the lease."""
    world.service_function()
    return ["1", world.publish(OLDER), world.publish(NEWER)]


def update(world, target: Callable[[str, dict[str, float]], AliasState], *, generation: int | None = None):
    lease = Lease("support-bot", OLDER, generation)
    return fenced_update(world.deps.lambda_, FUNCTION, "live", target,
                         holds_lease=lambda: world.ledger.holds_lease(lease), what="test step")


def hook_once(recorder: AliasRecorder, phase: str, action: Callable[[AliasUpdate], None]) -> Callable[[], None]:
    """Run ``action`` at ``phase`` of the next UpdateAlias (in the caller's thread)."""
    done = threading.Event()

    def hook(update: AliasUpdate, at: str) -> None:
        if at == phase and not done.is_set():
            done.set()
            action(update)

    return recorder.add_hook(hook)


def test_a_fenced_update_moves_the_alias_while_the_lease_is_held(world, live):
    generation = world.ledger.acquire_lock("support-bot", OLDER, 3600)
    change = update(world, lambda *_: canary_state("1", "2", 0.1), generation=generation)
    assert (change.before, change.after) == (("1", {}), ("1", {"2": 0.1}))
    assert world.alias() == ("1", {"2": 0.1})


def test_no_update_is_sent_once_the_lease_is_gone(world, live, aliases):
    generation = world.ledger.acquire_lock("support-bot", OLDER, 3600)
    world.ledger.take_over_lock("support-bot", OLDER, NEWER, 3600)
    with pytest.raises(LeaseLost, match="the lease is no longer held"):
        update(world, lambda *_: canary_state("1", "2", 0.1), generation=generation)
    assert aliases.updates(FUNCTION, "live") == [] and world.alias() == ("1", {})


def test_an_alias_changed_since_it_was_read_is_read_again(world, live, aliases):
    generation = world.ledger.acquire_lock("support-bot", OLDER, 3600)
    # When someone else's update lands between the read and ours
    lam = world.deps.lambda_
    remove = hook_once(aliases, "before",
                       lambda _: lam.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="3"))
    try:
        change = update(world, lambda version, _: (version, {"2": 0.1}), generation=generation)
    finally:
        remove()
    # Then ours is refused on its stale RevisionId, then made from what the alias is now
    assert [(u.function_version, u.accepted) for u in aliases.updates(FUNCTION, "live")] == [
        ("3", True), ("1", False), ("3", True)
    ]
    assert change.before == ("3", {}) and world.alias() == ("3", {"2": 0.1})


def test_an_update_made_as_the_lease_moved_is_undone(world, live, aliases):
    generation = world.ledger.acquire_lock("support-bot", OLDER, 3600)
    # When the lease is taken over after our check, before our update lands (nobody touched the alias yet)
    remove = hook_once(aliases, "before", lambda _: world.ledger.take_over_lock("support-bot", OLDER, NEWER, 3600))
    try:
        with pytest.raises(LeaseLost, match="moved during the update; .* put back to version 1"):
            update(world, lambda *_: canary_state("1", "2", 0.1), generation=generation)
    finally:
        remove()
    # Then our update is undone: the alias is as the new holder found it
    assert world.alias() == ("1", {})
    assert [u.weights for u in aliases.updates(FUNCTION, "live") if u.accepted] == [{"2": 0.1}, {}]


def test_an_undo_never_overwrites_the_new_holders_change(world, live, aliases):
    generation = world.ledger.acquire_lock("support-bot", OLDER, 3600)
    lam = world.deps.lambda_

    # When our update lands, then the lease moves and its new holder sets the alias before our re-check
    def new_holder_moves(_: AliasUpdate) -> None:
        world.ledger.take_over_lock("support-bot", OLDER, NEWER, 3600)
        lam.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="1",
                         RoutingConfig={"AdditionalVersionWeights": {"3": 0.2}})

    remove = hook_once(aliases, "after", new_holder_moves)
    try:
        with pytest.raises(LeaseLost, match="changed again since .*left as it is"):
            update(world, lambda *_: canary_state("1", "2", 0.1), generation=generation)
    finally:
        remove()
    # Then the new holder's state stands: our undo was refused on its RevisionId
    assert world.alias() == ("1", {"3": 0.2})
    assert [u.accepted for u in aliases.updates(FUNCTION, "live")] == [True, True, False]


def test_an_alias_that_never_stops_changing_is_a_conflict(world, live, aliases):
    generation = world.ledger.acquire_lock("support-bot", OLDER, 3600)
    lam = world.deps.lambda_
    busy = threading.local()

    def interfere(update: AliasUpdate, phase: str) -> None:
        if phase == "before" and not getattr(busy, "on", False):
            busy.on = True
            try:
                lam.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="1")
            finally:
                busy.on = False

    remove = aliases.add_hook(interfere)
    try:
        with pytest.raises(AliasConflict, match="changed under each of 5 conditional updates"):
            update(world, lambda *_: canary_state("1", "2", 0.1), generation=generation)
    finally:
        remove()
    assert world.alias() == ("1", {})
