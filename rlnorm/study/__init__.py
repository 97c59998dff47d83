"""Running studies: configs and agents files, one run, the study runner and its executors, the on-disk record,
provenance, and the benchmarks."""
