"""Experiments built from training runs: grids of runs (`sweep`), seed aggregation (`aggregate`),
the decision experiment (`decision`, `demo`), the offline gate classifier (`classify`) and reports.
"""
