"""Running a plan: one run end to end (train, record, ingest), local pools, SLURM through submitit,
locks, progress and trackers.
"""
