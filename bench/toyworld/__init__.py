"""The toy world: a tiny model trained from scratch, a known gold reward and a length-biased judge."""
