"""Per-step train time of one variant at another checkout of the project against this one: does a change to
the shared plumbing cost a variant that declares none of it anything? (Issue 14's target: within 2% on the
toy world.)

    git worktree add /tmp/old <rev>
    python -m bench.benchmarks.step_time --old /tmp/old [--repeats 6] [--max-steps 189] [--extra loss=dpo]

Each measurement is the train_overhead benchmark's harness side (`run_train` in a fresh process, the steps
timed by one callback) run from each tree: `python -m` puts the working directory first on sys.path, so the
process imports that tree's `bench`. Runs alternate old, new, new, old, ... (the load of a shared machine
falls on both alike); the figure is the median of the per-pair ratios new/old of the per-step times. One
warm-up per tree first builds the toy world and fills its reference cache. On this 2-core CPU the per-pair
noise is +-5-8%: a 2% difference is not resolved by a handful of pairs (docs/environment.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.benchmarks.train_overhead import _measure

HERE = Path(__file__).resolve().parents[2]  # this checkout's root


def _per_step(tree: Path, root: Path, index: int, args: argparse.Namespace) -> float:
    """Seconds per optimiser step of the harness side run from `tree`, with its own cache under `root`."""
    side = argparse.Namespace(
        model="toy", max_steps=args.max_steps, cache=str(root / "cache"), extra=args.extra
    )
    result = _measure(side, "harness", root, index, tree=tree)
    return float(result["steps"] / max(result["n_steps"], 1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="the other checkout (e.g. a git worktree)")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--max-steps", type=int, default=189)
    parser.add_argument("--extra", action="append", default=[], help="an override for both, e.g. loss=ipo")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    trees = {"old": Path(args.old).resolve(), "new": HERE}
    with tempfile.TemporaryDirectory(prefix="bench-step-time-") as tmp:
        roots = {name: Path(tmp) / name for name in trees}
        for name, tree in trees.items():
            _per_step(tree, roots[name], -1, args)  # warm-up: world and reference cache
        times: dict[str, list[float]] = {"old": [], "new": []}
        for i in range(args.repeats):
            for name in ("old", "new") if i % 2 == 0 else ("new", "old"):
                times[name].append(_per_step(trees[name], roots[name], i, args))
                print(f"  repeat {i} {name}: {1000 * times[name][-1]:.2f} ms per step", flush=True)
    ratios = [new / old for new, old in zip(times["new"], times["old"], strict=True)]
    print(
        f"per step over {args.max_steps} steps: old median {1000 * statistics.median(times['old']):.1f} ms, "
        f"new median {1000 * statistics.median(times['new']):.1f} ms; new/old paired ratio median "
        f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}, {args.repeats} pairs)"
    )


if __name__ == "__main__":
    main()
