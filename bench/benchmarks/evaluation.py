"""Evaluation benchmark on the toy world: time of each evaluation stage for one run, and the generation
stage's HF throughput against a bare `model.generate` loop on the same prompts (target: within 1.2x).

    python -m bench.benchmarks.evaluation [--repeats 3]

Uses the default toy world and a DPO policy trained for it (trained first, into a temporary folder, if no
run is given with --run). KL must not re-run the policy: the stage takes the policy's log-probs from
`generate` itself, which this script checks by counting policy forward calls outside `generate`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from bench.config import load_spec
from bench.core.records import read_json
from bench.core.sampling import sample
from bench.pipeline import run_one, stages_named
from bench.sources import select
from bench.sources.prompts import evaluation_prompts


def bare_generate(model, tok, prompts: list[str], n: int, gen) -> int:  # type: ignore[no-untyped-def]
    """The baseline: the same batches through model.generate with nothing else; returns generated tokens."""
    tok.padding_side = "left"
    jobs = [p for p in prompts for _ in range(n)]
    tokens = 0
    for i in range(0, len(jobs), gen.batch_size):
        enc = tok(jobs[i : i + gen.batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=gen.temperature,
            top_k=gen.top_k,
            top_p=gen.top_p,
            max_new_tokens=gen.max_new_tokens,
            pad_token_id=tok.pad_token_id,
        )
        tokens += int((out[:, enc["input_ids"].shape[1] :] != tok.pad_token_id).sum())
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            "loss.beta=1",
            "study=bench_eval",
            f"paths.results={tmp}/results",
            f"paths.scratch={tmp}/s",
        ]
        spec = load_spec(overrides)
        sources = select(spec)
        t0 = time.perf_counter()
        run_dir = run_one(spec, stages=stages_named(["train"]))
        print(f"trained the policy in {time.perf_counter() - t0:.1f} s")
        run_one(spec)  # the evaluation stages, timed by status.json
        stages = read_json(run_dir / "status.json")["stages"]
        print(
            "evaluation stages of one toy run (s):",
            {k: v.get("seconds") for k, v in stages.items() if k != "train"},
        )
        policy, tok = sources.model.load(spec.checkpoint_dir())
        reference, _ = sources.model.load(sources.model.reference())
        prompts = [str(p) for p in evaluation_prompts(spec, sources.data)]  # the toy world's: plain strings
        n, gen = spec.eval.samples_per_prompt, spec.eval.generation
        calls = {"forward": 0}
        policy.register_forward_hook(lambda *a: calls.__setitem__("forward", calls["forward"] + 1))
        sample(policy, tok, prompts, n, gen, seed=0, reference=reference)
        with_kl, calls["forward"] = calls["forward"], 0
        torch.manual_seed(0)
        bare_generate(policy, tok, prompts, n, gen)
        print(
            f"policy forward calls: {with_kl} for samples + reference log-probs + exact KL, "
            f"{calls['forward']} for bare generate (equal: KL never re-runs the policy)"
        )
        ours, ours_ref, bare = [], [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            rows = sample(policy, tok, prompts, n, gen, seed=r)
            ours.append((sum(len(x["token_ids"]) for x in rows), time.perf_counter() - t))
            t = time.perf_counter()
            rows = sample(policy, tok, prompts, n, gen, seed=r, reference=reference)
            ours_ref.append((sum(len(x["token_ids"]) for x in rows), time.perf_counter() - t))
            t = time.perf_counter()
            bare.append((bare_generate(policy, tok, prompts, n, gen), time.perf_counter() - t))
        rate = {
            name: statistics.median(tk / s for tk, s in runs)
            for name, runs in (("ours", ours), ("ours+reference", ours_ref), ("bare", bare))
        }
        print(f"generation throughput, tokens/s (median of {args.repeats}, {len(prompts) * n} sequences):")
        for name, value in rate.items():
            print(f"  {name:16s} {value:9.0f}")
        print(
            f"  bare / ours = {rate['bare'] / rate['ours']:.2f}x (target <= 1.2x); "
            f"bare / ours with reference scoring and KL = {rate['bare'] / rate['ours+reference']:.2f}x"
        )


if __name__ == "__main__":
    main()
