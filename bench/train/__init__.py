"""Training one policy: the TRL subclass (trainer), the run around it (fit), what it keeps on disk (state),
the shared reference log-probs (refcache), KL pairs, BOS checks and multi-process launch."""
