"""Our own lm-eval task YAMLs (toy_*.yaml) and their helpers; loaded by bench.stages.lm_eval, not imported."""
