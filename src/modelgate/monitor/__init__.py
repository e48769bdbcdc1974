"""Watching live after a release: drift against the promotion baseline (and, from the monitor work, actions)."""
