"""The reward-hacking environment: problems x loophole mode x grader. Never imports torch."""
