"""Sampling benchmark: the sample stage's generation throughput against the generate stage's on the same
model, prompts and decoding (target: within 1.2x), and what judging adds.

    python -m bench.benchmarks.sampling [--prompts 256] [--repeats 3] [overrides ...]

Both paths run here on the run's reference model: the generate stage's sampler as that stage calls it (with
the reference's forward pass for KL), and the sample stage's (bench.stages.sample: the same sampler, no KL)
followed by its judge (onpolicy.judge). Tokens per second count generated tokens; the median of the repeats is
printed. Defaults: the toy world (model=toy dataset=toy), K = 4, 48 new tokens.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.config import load_spec
from bench.core.chat import uses_chat_template
from bench.core.sampling import sample
from bench.judge.sampled import SamplingJudge
from bench.pipeline import preflight
from bench.sources.sampled import prompt_slice
from bench.stages.base import Context
from bench.stages.generate import eval_seed
from bench.stages.sample import decoding, judge_lists, part_seed, sample_rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    spec = load_spec(
        [
            "onpolicy.enabled=true",
            f"onpolicy.prompts_count={args.prompts}",
            "logging.wandb=false",
            *args.overrides,
        ]
    )
    sources = preflight(spec)
    ctx = Context(spec, sources, spec.run_dir(), spec.checkpoint_dir())
    path = sources.model.reference()
    model, tok = sources.model.load(path)
    prompts = prompt_slice(spec, sources.data.dataset_rows())
    chat = uses_chat_template(tok, spec.model.chat_template)
    gen, k = decoding(spec), spec.onpolicy.samples
    print(
        f"model {spec.model.name} ({path}), {len(prompts)} prompts x {k} samples, {gen.max_new_tokens} new "
        f"tokens, batch {gen.batch_size}, {torch.get_num_threads()} threads"
    )
    rates: dict[str, list[float]] = {"generate stage": [], "sample stage": [], "sample stage + judge": []}
    for repeat in range(args.repeats):
        t0 = time.perf_counter()
        rows = sample(
            model, tok, prompts, k, gen, seed=eval_seed(repeat), reference=model, desc="generate", chat=chat
        )
        rates["generate stage"].append(sum(len(r["token_ids"]) for r in rows) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        rows = sample_rows(ctx, path, (model, tok), prompts, part_seed(spec.seed, repeat))
        gen_s = time.perf_counter() - t0
        tokens = sum(len(r["token_ids"]) for r in rows)
        lists = [
            {"prompt": p, "completions": [r["completion"] for r in rows if r["prompt_id"] == i]}
            for i, p in enumerate(prompts)
        ]
        judge_lists(spec, SamplingJudge(spec, sources, path), lists, 0)  # its model loads here, as per build
        rates["sample stage"].append(tokens / gen_s)
        rates["sample stage + judge"].append(tokens / (time.perf_counter() - t0))
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        print(f"  {name:22s} {value:10.0f} generated tokens/s (median of {args.repeats})")
    ratio = median["generate stage"] / median["sample stage"]
    print(f"  generate stage / sample stage throughput: {ratio:.2f}x (target: sample stage within 1.2x)")


if __name__ == "__main__":
    main()
