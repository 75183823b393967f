"""The routing method: contrastive pairs -> a hack direction -> per-rollout gate.

`pairs` (contrastive pair sets), `self_generated` (pairs the model writes itself), `directions`
(v_act, v_grad, Haar placebo), `gates` (scores -> zones, bands), `router` (the trainer's glue:
scores each rollout and calls the gate).
"""
