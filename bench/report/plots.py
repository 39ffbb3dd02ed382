"""Study plots: win rates against KL (the DPO paper's frontier view), and length against win rate."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_frontier(frame: pd.DataFrame, out: Path) -> list[Path]:
    """frontier.png/.pdf: judged and gold win rate vs KL, and length ratio vs judged win rate, per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    runs = frame[frame["variant"] != "reference"]
    ref = frame[frame["variant"] == "reference"]
    panels = (
        ("kl_seq", "win_rate", "judged win rate vs reference"),
        ("kl_seq", "gold_win_rate", "gold win rate vs reference"),
        ("length_ratio", "win_rate", "judged win rate vs reference"),
    )
    for ax, (x, y, ylabel) in zip(axes, panels, strict=True):
        for variant, group in runs.groupby("variant"):
            group = group.sort_values(x)
            ax.plot(group[x], group[y], marker="o", label=str(variant))
            for _, r in group.iterrows():
                if r.get("beta") is not None and not pd.isna(r.get("beta")):
                    ax.annotate(
                        f"β={r['beta']:g}",
                        (r[x], r[y]),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=8,
                    )
        if not ref.empty and x in ref and y in ref:
            ax.scatter(ref[x], ref[y], marker="*", s=160, color="black", label="reference", zorder=3)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(
            "KL(policy || reference), nats per sequence" if x == "kl_seq" else "length / reference length"
        )
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_title("The judge's view")
    axes[1].set_title("The gold reward's view")
    axes[2].set_title("How much of the win is length")
    fig.tight_layout()
    paths = [out / "frontier.png", out / "frontier.pdf"]
    for p in paths:
        tmp = p.with_name(f".{p.name}.tmp{p.suffix}")
        fig.savefig(tmp, dpi=120)
        tmp.replace(p)
    plt.close(fig)
    return paths
