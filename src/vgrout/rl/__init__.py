"""The RL loop: Dr.GRPO math, the policy and its rollout engine, the trainer, evaluation.

`grpo` (advantages, loss), `policy` (model + adapter, log-probs), `engine` (sampling and decoding),
`components` (what a run needs, built from its config), `train` (the loop) and the pieces it calls:
`rollouts` (sampling and grading a step's rows), `advantages` (monitor, advantages), `update` (the
policy update), `metrics` (what a step logs), `run` (a run's objects), `checkpoint` (save, load,
resume), `run_eval` (a run's periodic and final evaluations); `evaluate` (held-out hack/solve of a
model state), `baselines` (the benchmark paper's interventions).
"""
