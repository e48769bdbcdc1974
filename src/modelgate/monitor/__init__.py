"""Monitoring of live after a release: scheduled re-evaluation, model lifecycle watch, and the
actions a service's policy takes on what they (and the drift check) find."""
