"""vgrout: gradient routing against reward hacking in GRPO.

Each adapted Linear gets a rank-2r LoRA split into a *deployed* block and a *quarantine* block;
per rollout a gate decides which block its update trains; the quarantine is deleted at deployment.
"""

__version__ = "0.1.0"
