"""Offline evaluation of a candidate against live, on the same cases, then a gate.

One module per concern, each importing only the ones before it:
``scorers`` (grading one output; the registry and the text scorers) -> ``model_scorers``
(``semantic``, ``llm_judge`` and their models) -> ``dataset`` (the JSONL cases) -> ``comparison``
(results, per-side metrics, paired deltas) -> ``runner`` (calls, rate limit, retries) and
``gate`` (criteria verdicts) -> ``report`` (the HTML page).
"""
