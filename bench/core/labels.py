"""Readable names of runs and configurations: the variant, its own hyperparameters (the fields of its loss
class, as the config holds them) and every other key a set of runs varies, so two runs that differ anywhere
in their experiment never share a name (the run id's readable prefix shows only beta, lr and seed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.core.keys import LOSS_META_KEYS, OPTIONAL_SECTIONS, leaves, signature

# names a reader knows better than the dotted key
SHORT = {"train.learning_rate": "lr", "onpolicy.enabled": "onpolicy", "round.index": "round"}
# A switched-on optional section (bench.core.keys.OPTIONAL_SECTIONS) is named by its switch against runs
# without it; its other keys only where they differ among the runs that have it. The previous round's run id
# is never shown: the round's index says where it is in its chain.
SWITCHES = {f"{section}.{switch}" for section, (switch, _) in OPTIONAL_SECTIONS.items()}
HIDDEN = {"round.after"}
ROUND_SLICE = ("onpolicy.prompts_start", "onpolicy.prompts_count")
LOSS = "loss."


def _value(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def varied(configs: Sequence[Mapping[str, Any]], include_seed: bool = False) -> list[str]:
    """Dotted leaves of the experiment (the run id's inputs) whose values differ among `configs`, in the order
    the first config holds them (a leaf some configs lack counts as varied); the seed only when asked."""
    sigs = [signature(c) for c in configs]
    order: dict[str, None] = {}
    for sig in sigs:
        order |= dict.fromkeys(leaves(sig))
    out = []
    for leaf in order:
        if (
            (leaf == "seed" and not include_seed)
            or leaf.removeprefix(LOSS) in LOSS_META_KEYS
            or leaf in HIDDEN
        ):
            continue
        section = leaf.split(".")[0]
        having = (
            [s for s in sigs if section in s]
            if section in OPTIONAL_SECTIONS and leaf not in SWITCHES
            else sigs
        )
        values = {repr(_value(sig, leaf)) for sig in having}
        if len(values) > 1:
            out.append(leaf)
    if "round.index" in out:  # a round's prompt slice follows from its index and its chain's slice size
        out = [leaf for leaf in out if leaf not in ROUND_SLICE]
    return out


def short_names(dotted: Sequence[str]) -> dict[str, str]:
    """{dotted key: column name}: the last part of the key (lr for the learning rate), the dotted key itself
    where two keys would share a name."""
    last = [SHORT.get(d, d.rsplit(".", 1)[-1]) for d in dotted]
    return {d: (n if last.count(n) == 1 else d) for d, n in zip(dotted, last, strict=True)}


def hyperparameters(config: Mapping[str, Any], others: Sequence[str]) -> dict[str, Any]:
    """{dotted key: value}: every hyperparameter of the run's loss (meta keys excluded by the signature), then
    the other varied keys (`others`, loss keys among them skipped: they are already in)."""
    sig = signature(config)
    own = {k: v for k, v in sig.get("loss", {}).items() if k not in LOSS_META_KEYS}
    out = {f"{LOSS}{k}": v for k, v in own.items()}  # in the YAML's order
    for key in others:
        if not key.startswith(LOSS):
            out[key] = _value(sig, key)
    return out


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def label(variant: str, values: Mapping[str, Any], shown: Mapping[str, str]) -> str:
    """'simpo beta=2.5 gamma_beta_ratio=0.5 lr=3e-07': the variant and its hyperparameters that are
    `shown` ({dotted: name}), in their order."""
    parts = [f"{shown[k]}={_text(values[k])}" for k in shown if k in values and values[k] is not None]
    return " ".join([variant, *parts])


def labels(
    configs: Sequence[Mapping[str, Any]], variants: Sequence[str], include_seed: bool = False
) -> list[str]:
    """One label per config: its variant, every hyperparameter of its loss, and every other key the configs
    vary (the seed too when `include_seed`); configs that differ in their experiment get different labels."""
    others = varied(configs, include_seed)
    out = []
    for config, variant in zip(configs, variants, strict=True):
        values = hyperparameters(config, others)
        out.append(label(variant, values, short_names(list(values))))
    return out
