"""Judges that earn their place: an LLM judge gates only when it agrees with people.

A dataset's ``llm_judge`` case may carry ``graded_answers``: fixed answers to its question,
each with a human's grade. Every evaluation has the judge grade them too (``JudgeCheck``),
and the gate measures the agreement on pass/fail (a grade of at least 0.5 passes):

* **Cohen's kappa**, not raw accuracy, is the bar (``policy.judge_min_kappa``, default
  0.6, "substantial" on Landis & Koch's scale): on a labelled subset where most answers
  are good, a judge that passes everything has high accuracy and zero kappa. Accuracy is
  shown next to it.
* Fewer than ``policy.judge_min_graded`` graded answers, or a kappa below the bar (or
  undefined: every answer got one label), and the judge does not gate: its cases are
  taken out of every accuracy criterion and its comparison is shown, marked as not gating.

The judge's model id and a digest of its rubric(s) are recorded with every verdict
(``contract.JudgeRecord``), so a verdict names exactly which grader it trusted.
"""

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from modelgate import gate_stats
from modelgate.contract import JudgeRecord

JUDGE_SCORER = "llm_judge"
PASS_GRADE = 0.5


class JudgeCheck(BaseModel):
    """The judge's grade of one human-graded answer."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    index: int = Field(ge=0)
    human_grade: float = Field(ge=0.0, le=1.0)
    judge_score: float = Field(ge=0.0, le=1.0)


class JudgeRun(BaseModel):
    """Which judge graded this evaluation, under which rubric(s), and its graded-answer checks."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    rubric_sha256: list[str]
    checks: list[JudgeCheck] = Field(default_factory=list)

    def merge(self, other: "JudgeRun") -> "JudgeRun":
        """Two shards' runs as one (shards of one evaluation use one judge)."""
        return JudgeRun(
            model_id=self.model_id if self.model_id == other.model_id else f"{self.model_id}, {other.model_id}",
            rubric_sha256=sorted(set(self.rubric_sha256) | set(other.rubric_sha256)),
            checks=sorted([*self.checks, *other.checks], key=lambda c: (c.case_id, c.index)),
        )


def rubric_digest(rubric: str) -> str:
    return hashlib.sha256(rubric.encode("utf-8")).hexdigest()


def judge_record(run: JudgeRun, *, min_kappa: float, min_graded: int) -> JudgeRecord:
    """Whether the judge may gate, and why, from its checks against the human grades."""
    human = [c.human_grade >= PASS_GRADE for c in run.checks]
    judged = [c.judge_score >= PASS_GRADE for c in run.checks]
    n = len(run.checks)
    kappa = gate_stats.cohen_kappa(human, judged) if n else None
    accuracy = sum(h == j for h, j in zip(human, judged)) / n if n else None
    if n < min_graded:
        gating, why = False, f"only {n} human-graded answer(s), the policy needs {min_graded} to check the judge"
    elif kappa is None:
        gating, why = False, f"kappa is undefined on {n} graded answers (both gave every answer one label)"
    elif kappa + 1e-12 < min_kappa:
        gating, why = False, f"Cohen's kappa {kappa:.2f} with the human grades < {min_kappa:.2f} required"
    else:
        gating, why = True, f"Cohen's kappa {kappa:.2f} with the human grades >= {min_kappa:.2f} required"
    agreement = f" (raw agreement {accuracy:.0%} on {n})" if accuracy is not None else ""
    return JudgeRecord(
        model_id=run.model_id,
        rubric_sha256=run.rubric_sha256,
        graded=n,
        kappa=kappa,
        accuracy=accuracy,
        min_kappa=min_kappa,
        gating=gating,
        reason=why + agreement + ("" if gating else ": its scores are shown but don't gate"),
    )
