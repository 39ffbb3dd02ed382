"""The stages of a run, one module each, over the stage contract of bench.stages.base; bench.pipeline holds
their order."""
