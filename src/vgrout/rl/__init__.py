"""The RL loop: Dr.GRPO math, the policy and its rollout engine, the trainer, evaluation.

`grpo` (advantages, loss), `policy` (model + adapter, log-probs), `engine` (sampling and decoding),
`components` (what a run needs, built from its config), `train` (the loop), `evaluate` (held-out
hack/solve), `baselines` (the benchmark paper's interventions).
"""
