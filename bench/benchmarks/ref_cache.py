"""Reference-pass benchmark: a 6-run beta sweep of one variant on the toy world, with and without the
shared reference cache.

    python -m bench.benchmarks.ref_cache [--betas 4,2,1,0.5,0.25,0.1] [--loss dpo] [--max-steps 0]

With the cache every run reads the reference log-probs the first run computed (target: one reference pass
over the data for the whole sweep); without it each run computes its own (one pass per run); TRL's default,
a reference forward in every step, would cost epochs passes per run (printed for comparison, not run).
Only the train stage runs; each mode uses fresh results/scratch folders under a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.config import load_spec
from bench.core.records import read_json
from bench.sources import select
from bench.train.fit import run_train


def sweep(betas: list[str], loss: str, root: Path, shared: bool, max_steps: int) -> dict[str, float]:
    """Train each beta in turn; count the runs that had to compute reference log-probs themselves."""
    mode = "shared" if shared else "unshared"
    passes, pairs, ref_seconds = 0, 0, 0.0
    t0 = time.perf_counter()
    for i, beta in enumerate(betas):
        refstats = root / "refstats-shared" if shared else root / f"refstats-{mode}-{i}"
        spec = load_spec(
            [
                f"loss={loss}",
                f"loss.beta={beta}",
                "study=bench_refcache",
                f"train.max_steps={max_steps}",
                f"paths.results={root / mode}",
                f"paths.scratch={root / ('scratch-' + mode)}",
                f"paths.refstats={refstats}",
            ]
        )
        run_train(spec, select(spec), spec.run_dir())
        info = read_json(spec.run_dir() / "train_info.json")["reference_logps"]
        pairs = info["pairs"]
        passes += int(info["computed"])
        if info["computed"]:
            ref_seconds += read_json(refstats / f"{info['key']}.json")["seconds"]
    return {
        "seconds": time.perf_counter() - t0,
        "reference_passes": passes,
        "reference_seconds": ref_seconds,
        "pairs": pairs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--betas", default="4,2,1,0.5,0.25,0.1")
    parser.add_argument("--loss", default="dpo")
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: the default schedule (3 epochs)")
    args = parser.parse_args()
    betas = args.betas.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Warm-up (not timed): imports, the toy world and first-call costs land here, not in either mode.
        sweep(betas[:1], args.loss, root / "warmup", shared=True, max_steps=2)
        results = {
            "shared cache": sweep(betas, args.loss, root, shared=True, max_steps=args.max_steps),
            "per-run (no sharing)": sweep(betas, args.loss, root, shared=False, max_steps=args.max_steps),
        }
    spec = load_spec([f"loss={args.loss}"])
    pairs = results["shared cache"]["pairs"]
    print(f"{len(betas)}-run beta sweep of {args.loss} on the toy world ({pairs} pairs)")
    for mode, r in results.items():
        passes, seconds, ref = r["reference_passes"], r["seconds"], r["reference_seconds"]
        print(f"  {mode:22s} reference passes: {passes:.0f}  in {ref:.1f} s  (sweep wall {seconds:.1f} s)")
    print(
        f"  TRL default (reference forward every step): {len(betas) * spec.train.epochs:.0f} passes (not run)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
