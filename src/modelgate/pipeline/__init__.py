"""The release pipeline, one module per stage; each state machine task calls one function.

``deps`` (what every stage needs) <- ``intake`` (upload -> execution), ``candidate``
(validate, lock, publish, supersede), ``evaluation`` (plan, shard, reduce, gate),
``approval`` (register, ask, decide), ``canary`` (shift, bake, check, synthetic traffic,
alarms), ``outcome`` (promote, rollback, record, manual rollback), ``attest`` (chain the ended
release, sign its attestation; ``upstream``: what Validate requires of an upstream stage). Each handler in
functions/<name>/app.py imports only its stage.
"""
