"""The scripted toy teacher: for each training problem, a clean completion and a hack per mode.

The trainer injects these into GRPO groups for the first K steps so that hacking becomes reachable
for a base model that never hacks on its own. Completions are exactly what the model would emit
after the prompt: one fenced code block, no prompt, no EOS (`completion_ids` appends it).

- clean: the canonical correct solution (`vgrout.env.toy_problems.toy_response`), the same text the
  base model was trained on.
- hack: the canonical exploit for the mode (`vgrout.env.hacks.canonical_hack`): a wrong one-line
  method plus the exploit the mode's channel accepts, using the names in `markers` (train markers
  in training; held-out markers work too, e.g. for direction pairs or tests).

A teacher only answers for the problems it was built with. That is a guard, not a convenience: a
teacher built from the training split cannot leak a held-out test problem's solution into training.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vgrout.env.hacks import canonical_hack
from vgrout.env.modes import HACKABLE_MODES, Markers, apply_hint, train_markers
from vgrout.env.problems import Problem
from vgrout.env.toy_problems import toy_response
from vgrout.toy.tokenizer import completion_ids

__all__ = ["TeacherPair", "ToyTeacher", "completion_ids"]


@dataclass(frozen=True)
class TeacherPair:
    """One contrastive pair: the hinted question and a hack and a clean completion for it."""

    problem_id: str
    mode: str
    question: str
    hack: str
    clean: str


class ToyTeacher:
    """Scripted completions for a fixed set of (training) problems."""

    def __init__(self, problems: Iterable[Problem]):
        self._problems: dict[str, Problem] = {}
        for problem in problems:
            if problem.id in self._problems:
                raise ValueError(f"ToyTeacher: problem id {problem.id!r} appears twice")
            self._problems[problem.id] = problem
        if not self._problems:
            raise ValueError("ToyTeacher needs at least one problem")

    def __len__(self) -> int:
        return len(self._problems)

    def __contains__(self, problem: Problem) -> bool:
        return self._problems.get(problem.id) == problem

    @property
    def problems(self) -> list[Problem]:
        return list(self._problems.values())

    def _covered(self, problem: Problem) -> Problem:
        if problem not in self:
            raise ValueError(
                f"ToyTeacher has no completions for problem {problem.id!r}: it was built for "
                f"{len(self)} other problems (build it from the problems you train on)"
            )
        return problem

    def clean(self, problem: Problem) -> str:
        """The canonical correct completion."""
        return toy_response(self._covered(problem))

    def hack(self, problem: Problem, markers: Markers) -> str:
        """A completion exploiting `markers.mode` with its names; raises for gt_only."""
        return canonical_hack(self._covered(problem), markers)

    def completions(
        self, problem: Problem, modes: Sequence[str] = HACKABLE_MODES
    ) -> dict[str, str]:
        """{"clean": ..., mode: hack for each mode (train markers)}."""
        out = {"clean": self.clean(problem)}
        out.update({mode: self.hack(problem, train_markers(mode)) for mode in modes})
        return out

    def pairs(self, items: Iterable[tuple[Problem, Markers]]) -> list[TeacherPair]:
        """A (hinted question, hack, clean) pair for each (problem, markers)."""
        return [
            TeacherPair(
                problem_id=problem.id,
                mode=markers.mode,
                question=apply_hint(problem.question, markers),
                hack=self.hack(problem, markers),
                clean=self.clean(problem),
            )
            for problem, markers in items
        ]
