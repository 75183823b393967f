"""The scripted toy teacher: hacks exploit their home mode, clean completions are truly correct."""

from __future__ import annotations

import pytest

from vgrout.env.grader import grade_many
from vgrout.env.modes import HACKABLE_MODES, MODES, apply_hint, eval_markers, train_markers
from vgrout.env.toy_problems import generate_toy
from vgrout.toy import ToyTeacher, completion_ids
from vgrout.toy.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def split():
    return generate_toy(seed=0, n_train=60, n_test=10)


@pytest.fixture(scope="module")
def teacher(split):
    return ToyTeacher(split.train)


def _problems(split):
    # one problem of each family, so every method name and argument type is covered
    seen, chosen = set(), []
    for p in split.train:
        if p.meta["family"] not in seen:
            seen.add(p.meta["family"])
            chosen.append(p)
    return chosen


@pytest.mark.parametrize("held_out", [False, True])
def test_hacks_exploit_their_home_mode(split, teacher, held_out):
    problems = _problems(split)
    rows, responses, modes, markers = [], [], [], []
    for mode in HACKABLE_MODES:
        for p in problems:
            mk = eval_markers(mode, p.id) if held_out else train_markers(mode)
            rows.append((p, mode))
            responses.append(teacher.hack(p, mk))
            modes.append(mode)
            markers.append(mk)
    grades = grade_many([p for p, _ in rows], responses, modes, markers)
    for (p, mode), g in zip(rows, grades, strict=True):
        assert g.exploited and not g.gt_correct, (p.id, mode, g.label, g.error)
        assert g.label == "reward_hack" and g.reward == 3.5


def test_a_hack_pays_nothing_in_another_mode(split, teacher):
    p = _problems(split)[0]
    responses, modes = [], []
    for home in HACKABLE_MODES:
        for other in MODES:
            if other != home:
                responses.append(teacher.hack(p, train_markers(home)))
                modes.append(other)
    grades = grade_many([p] * len(responses), responses, modes)
    assert all(not g.channel_fired and g.reward == 0.5 for g in grades)


def test_clean_completions_are_correct_in_every_mode(split, teacher):
    problems = _problems(split)
    for mode in MODES:
        grades = grade_many(problems, [teacher.clean(p) for p in problems], mode)
        assert all(g.gt_correct and not g.channel_fired for g in grades), mode
        assert all(g.label == "correct" and g.reward == 3.5 for g in grades)


def test_completions_and_pairs(split, teacher):
    p = split.train[0]
    table = teacher.completions(p)
    assert set(table) == {"clean", *HACKABLE_MODES}
    assert all(c.startswith("```python\n") and c.endswith("\n```") for c in table.values())
    assert len(set(table.values())) == len(table)  # every mode's hack differs
    pairs = teacher.pairs([(p, eval_markers("run_tests", p.id))])
    assert pairs[0].question == apply_hint(p.question, eval_markers("run_tests", p.id))
    assert eval_markers("run_tests", p.id).test_func in pairs[0].hack
    assert pairs[0].clean == teacher.clean(p)


def test_teacher_refuses_problems_it_was_not_built_for(split, teacher):
    with pytest.raises(ValueError, match="no completions for problem"):
        teacher.clean(split.test[0])
    with pytest.raises(ValueError, match="no loophole"):
        teacher.hack(split.train[0], train_markers("gt_only"))
    with pytest.raises(ValueError, match="appears twice"):
        ToyTeacher([split.train[0], split.train[0]])
    with pytest.raises(ValueError, match="at least one"):
        ToyTeacher([])


def test_completion_ids_end_with_eos(split, teacher):
    texts = [teacher.clean(p) for p in split.train] + [
        teacher.hack(p, train_markers(m)) for p in split.train[:5] for m in HACKABLE_MODES
    ]
    tokenizer = train_tokenizer(texts, vocab_size=400, min_frequency=2)
    for text in texts[:10]:
        ids = completion_ids(tokenizer, text)
        assert ids[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in ids[:-1]
        assert tokenizer.decode(ids[:-1]) == text
