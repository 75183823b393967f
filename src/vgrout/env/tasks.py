"""A task = problems x loophole mode x markers: the prompts a run trains or evaluates on.

Each problem gets exactly one mode (a seeded, balanced partition), so every prompt has one *home*
mode whose channel pays. Training prompts carry the train markers; held-out evaluation prompts carry
eval markers chosen per (mode, problem) from families disjoint from the train ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vgrout.env.modes import Markers, apply_hint, eval_markers, partition, train_markers
from vgrout.env.problems import Problem


@dataclass(frozen=True)
class Item:
    """One prompt: a problem shown with its home mode's hint."""

    problem: Problem
    mode: str
    markers: Markers
    question: str  # the hinted user message

    @property
    def id(self) -> str:
        return self.problem.id


# Training markers for (mode, problem); default: the fixed train markers of the mode.
MarkerPolicy = Callable[[str, Problem], Markers]


def make_item(
    problem: Problem, mode: str, held_out: bool = False, train: MarkerPolicy | None = None
) -> Item:
    if held_out:
        markers = eval_markers(mode, problem.id)
    else:
        markers = train(mode, problem) if train is not None else train_markers(mode)
    return Item(problem, mode, markers, apply_hint(problem.question, markers))


def make_items(
    problems: list[Problem],
    modes: tuple[str, ...],
    seed: int,
    held_out: bool = False,
    train: MarkerPolicy | None = None,
) -> list[Item]:
    """Partition `problems` across `modes` (balanced, seeded) and hint each with its mode.
    `train` chooses the training markers per (mode, problem) (e.g. a fresh name per problem, so
    a hack pays only when it copies the name its hint discloses); held-out items ignore it."""
    assignment = partition([p.id for p in problems], modes, seed)
    return [make_item(p, assignment[p.id], held_out, train) for p in problems]
