"""Watching live after a release: the scheduled drift check against the promotion baseline,
the scheduled re-evaluation, the model lifecycle watch, and the actions a service's policy takes
on what they find."""
