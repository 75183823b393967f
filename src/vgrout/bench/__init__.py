"""`vgrout bench`: speed and routing benchmarks that print numbers and ratios (never timed
tests)."""
