"""The stages of a run, one module each, over the stage contract of bench.stages.base; bench.pipeline holds
their order."""

# The stages' names in pipeline order, importable without loading the stages (the command line's help and
# `bench ls` show them); bench.pipeline checks it against its STAGES.
STAGE_NAMES = ("sample", "train", "reference", "generate", "judge", "lm_eval", "metrics", "curve")
