"""Reading what studies wrote and saying what it shows: records, metrics, statistics, claims and verdicts,
figures and the report. Torch-free."""
