"""The `bench` command: run, report, world, validate, ls.

    bench run [overrides...]            one run (all stages); comma lists expand to a grid (Hydra syntax)
    bench config [overrides...]         print the resolved config (also: bench run ... --cfg job)
    bench sweep <file> [overrides]      expand a study file, validate every run, run what is unfinished
    bench status <study>                each run's state and stage from its folder, and errors of failed runs
    bench evaluate <target> [overrides] evaluate a run folder, a saved model folder, or `reference`
    bench sample [overrides...]         training pairs sampled from a model and judged (onpolicy.*): a dataset
    bench report <study>                results table (markdown + CSV) and plots over a study's run folders
    bench world [overrides...]          build (or show) the toy world the overrides select
    bench validate [overrides...]       compose and validate, print the runs, compute nothing
    bench ls <group>                    the options of a config group (losses with their papers)

Every command takes --dry-run, which validates and prints what it would do.

Argument parsing only: each command calls one function of the package. Each command imports the modules it
uses when it runs (the one place that imports bench modules inside functions), so `bench status` and
`bench ls` do not pay for torch, transformers and TRL.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from bench.core.errors import ConfigError, DiskFullError, did_you_mean
from bench.core.project import project_root
from bench.core.space import is_disk_full
from bench.groups import CONF_DIR, GROUPS, LOSS_META_KEYS, options
from bench.stages import STAGE_NAMES

if TYPE_CHECKING:
    from bench.specs import RunSpec
    from bench.stages.base import Stage
    from bench.study import PlannedRun

log = logging.getLogger("bench")


def _setup_logging(level: str = "INFO") -> None:
    """Our progress lines at `level`; other libraries' loggers (alpaca_eval logs to root) at WARNING."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("bench").setLevel(level)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # warns on every in-memory model, as designed here
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # wandb is offline unless WANDB_MODE says otherwise: bench.tracking passes the mode to every wandb.init
    # (not through the environment: with WANDB_MODE=offline set, importing transformers prints a banner)
    # Libraries' tqdm bars interleave badly across parallel runs; each stage logs its own progress lines.
    os.environ.setdefault("TQDM_DISABLE", "1")


def _quiet_libraries() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def expand_overrides(overrides: list[str]) -> list[list[str]]:
    """Hydra sweep syntax (a=1,2 b=x,y) to one override list per run, in Hydra's own order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(run) for batch in batches for run in batch] or [[]]


def _specs(overrides: list[str]) -> list[tuple[list[str], RunSpec]]:
    from bench.config import load_spec

    return [(run, load_spec(run)) for run in expand_overrides(overrides)]


def cmd_validate(args: argparse.Namespace) -> int:
    """Compose and validate the runs, and run the checks `bench sweep --dry-run` runs (data rows, prompts,
    model, judge, lm-eval tasks), once per distinct set of inputs; compute nothing."""
    from bench.pipeline import preflight_once

    specs = _specs(args.overrides)
    unavailable: list[str] = []
    checked: set[str] = set()
    for _, spec in specs:
        preflight_once(spec, checked, unavailable)
    for run, spec in specs:
        print(f"{spec.run_id:48s} {spec.run_dir()}  [{' '.join(run)}]")
    print(f"{len(specs)} run(s) valid")
    if unavailable:
        print(f"not checked on this machine ({len(unavailable)}); a run needs them:")
        print("\n".join(f"  - {line}" for line in unavailable))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the composed, resolved config of the overrides (what `bench run` would run), as YAML."""
    from omegaconf import OmegaConf

    from bench.config import compose, load_spec

    load_spec(args.overrides)  # validated first: a config that would be refused is not printed as if valid
    print(OmegaConf.to_yaml(compose(args.overrides), resolve=True), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.cfg:  # Hydra's `--cfg job`: print the config instead of running it
        return cmd_config(args)
    from bench.pipeline import run_one, stages_named

    specs = _specs(args.overrides)
    stages = stages_named(args.stages.split(",") if args.stages else None)
    if args.dry_run:
        return cmd_validate(args)
    first = specs[0][1]
    if first.launcher.kind == "slurm":  # a grid on the command line: an ad-hoc study
        from bench.launch import submit
        from bench.pipeline import preflight
        from bench.status import run_state
        from bench.study import PlannedRun

        for _, spec in specs:
            preflight(spec)
        runs = [PlannedRun(spec.loss.name, overrides, spec) for overrides, spec in specs]
        todo = [r for r in runs if run_state(r.spec.run_dir())[0] != "done"]
        job_ids = submit({"study": first.study}, runs, todo) if todo else []
        print(f"{len(runs) - len(todo)} run(s) already finished; submitted {len(todo)}: {' '.join(job_ids)}")
        print(f"follow them with: bench status {first.study}")
        return 0
    workers = first.launcher.workers
    if len(specs) == 1 or first.launcher.kind == "inproc" or workers <= 1:
        _quiet_libraries()
        from bench.status import run_summary

        for _, spec in specs:
            t0 = time.perf_counter()
            run_dir = run_one(spec, stages)
            print(run_summary(run_dir, time.perf_counter() - t0))
        return 0
    return _run_local(specs, stages, workers)


def _run_local(specs: list[tuple[list[str], RunSpec]], stages: tuple[Stage, ...], workers: int) -> int:
    """Each run in its own process, `workers` at a time, each with cpu_count/workers torch threads."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log.info("launching %d runs, %d at a time (%d thread(s) each)", len(specs), workers, threads)

    def launch(item: tuple[list[str], RunSpec]) -> tuple[str, int]:
        overrides, spec = item
        cmd = [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            *overrides,
            "launcher=inproc",
            "--stages",
            ",".join(s.name for s in stages),
        ]
        proc = subprocess.run(cmd, env=env, check=False)
        return spec.run_id, proc.returncode

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(launch, specs))
    failed = [rid for rid, rc in results if rc != 0]
    for rid in failed:
        log.error("run %s failed: see its status.json", rid)
    return 1 if failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Expand and validate a study file; print its run table; run the runs that are not finished."""
    from bench.launch import check_launcher
    from bench.status import run_state
    from bench.study import expand

    unavailable: list[str] | None = [] if args.dry_run else None
    shrunk: list[str] | None = [] if args.shrink else None
    data, runs = expand(Path(args.file), args.overrides, unavailable, shrunk)
    check_launcher(runs)
    print(f"study {data['study']}: {str(data.get('question', '')).strip()}")
    if shrunk is not None:
        print("shrunk (bench/shrink.py): each variant's first grid point on a tiny stand-in; replaced:")
        print("\n".join(f"  - {line}" for line in dict.fromkeys(shrunk)) or "  (none)")
    width = max(len(r.label) for r in runs)
    print(f"{'run':52s} {'state':9s} {'configuration':{width}s} overrides")
    todo = []
    for run in runs:
        state, _, _ = run_state(run.spec.run_dir())
        shown = " ".join(o for o in run.overrides if not o.startswith("study="))
        print(f"{run.spec.run_id:52s} {state:9s} {run.label:{width}s} {shown}")
        if state != "done":
            todo.append(run)
    print(f"{len(runs)} run(s), {len(runs) - len(todo)} finished, {len(todo)} to run")
    if unavailable:
        print(f"not checked on this machine ({len(unavailable)}); a submission needs them:")
        print("\n".join(f"  - {line}" for line in unavailable))
    if args.dry_run and runs[0].spec.launcher.kind == "slurm":
        from bench.launch import ask_cluster

        print("\n".join(ask_cluster(data["study"], todo)))
    if args.dry_run:
        return 0
    from bench.launch import submit

    if not todo:  # nothing to run; the study's record still names its question, source and runs
        submit(data, runs, [])
        return _wait_for(runs) if args.wait else 0

    _quiet_libraries()
    submitted_at = time.time()
    job_ids = submit(data, runs, todo)
    if job_ids:
        print(f"submitted {len(todo)} run(s) as job(s) {', '.join(job_ids)}")
        print(f"follow them with: bench status {data['study']}")
    if args.wait:
        return _wait_for(runs, {r.spec.run_dir() for r in todo}, submitted_at)
    return 0


def _wait_state(run_dir: Path, resubmitted: bool, since: float) -> str:
    """The run's state for the wait; a resubmitted run whose status.json predates the submission still shows
    its previous attempt's end (failed, cancelled), which is not this attempt's: it is 'resubmitted'."""
    from bench.status import run_state

    state = run_state(run_dir)[0]
    if resubmitted and state in ("failed", "cancelled"):
        status = run_dir / "status.json"
        if status.exists() and status.stat().st_mtime < since:
            return "resubmitted"
    return state


def _wait_for(runs: list[PlannedRun], submitted: set[Path] | None = None, since: float = 0.0) -> int:
    """Block until every run is done or failed, with a progress line whenever the counts change. Runs in
    `submitted` (sent at `since`) count as finished only once their new attempt has ended."""
    submitted = submitted or set()
    last = ""
    while True:
        states = [_wait_state(r.spec.run_dir(), r.spec.run_dir() in submitted, since) for r in runs]
        counts = {s: states.count(s) for s in sorted(set(states))}
        line = ", ".join(f"{n} {s}" for s, n in counts.items())
        if line != last:
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
            last = line
        if all(s in ("done", "failed", "cancelled") for s in states):  # nothing will change them now
            return 1 if {"failed", "cancelled"} & set(states) else 0
        time.sleep(5)


def _study_dir(args: argparse.Namespace) -> Path:
    """<results>/<study>, absolute: --results, else the project root's results/ (bench.core.project)."""
    root = project_root()
    results = Path(args.results).resolve() if args.results else root / "results"
    study_dir = results / args.study
    if not study_dir.is_dir():
        where = "--results" if args.results else f"the project root {root}, found from {Path.cwd()}"
        raise ConfigError(
            f"no study folder {study_dir} (results folder from {where}): nothing has run in study "
            f"{args.study!r} there. Run the command inside the project, set DPO_BENCH_ROOT, or pass --results"
        )
    return study_dir


def cmd_status(args: argparse.Namespace) -> int:
    from bench.status import status_table

    study_dir = _study_dir(args)
    print(f"study {args.study}: {study_dir}")
    print(status_table(study_dir))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bench.pipeline import evaluate_target

    if args.dry_run:
        from bench.pipeline import target_kind

        kind = {"run": "run folder", "model": "model folder", "reference": "the reference model"}
        what = kind[target_kind(args.target)]
        print(f"would evaluate {what} {args.target} with {args.overrides or 'the default config'}")
        return 0
    _quiet_libraries()
    run_dir = evaluate_target(args.target, args.overrides)
    print(f"evaluation records in {run_dir}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from bench.config import load_spec
    from bench.core.records import read_json
    from bench.pipeline import preflight, sample_pairs
    from bench.sources.sampled import PAIRS, PROVENANCE, sampled_dir

    spec = load_spec(["onpolicy.enabled=true", *args.overrides])
    if args.dry_run:
        preflight(spec)
        print(f"would sample {spec.onpolicy.samples} completions per prompt into {sampled_dir(spec)}")
        return 0
    _quiet_libraries()
    folder = sample_pairs(spec)
    p = read_json(folder / PROVENANCE)
    print(
        f"{p['pairs']} pairs from {p['lists']} prompts ({p['samples_per_prompt']} samples each from "
        f"{p['model_path']}, judge {p['judge']}, rule {p['rule']}; {p['prompts_without_pair']} prompts "
        f"without a pair, {p['malformed_verdicts']} malformed verdicts) in {folder}\n"
        f"  train on them: bench run dataset.train_path={folder / PAIRS} (a toy world) or dataset=local "
        f"dataset.path={folder / PAIRS}"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.core.splits import SPLITS
    from bench.report import SelectionRule, check_options, collect_study, write_report

    study_dir = _study_dir(args)
    if args.select_split not in SPLITS:
        raise ConfigError(f"--select-split {args.select_split!r}: use one of {', '.join(SPLITS)}")
    rule = SelectionRule(args.select, args.select_split, maximize=not args.minimize)
    out = Path(args.out).resolve() if args.out else study_dir / "report"
    if args.dry_run:
        study = collect_study(study_dir)
        baseline = check_options(study, rule, args.baseline)
        _budgets(args.kl)
        print(
            f"would report {len(study.runs)} finished run(s) of {study_dir} into {out}; best configs: "
            f"{rule.describe()}; paired comparisons against {baseline or 'none'}"
        )
        return 0
    table = write_report(study_dir, rule, baseline=args.baseline, out=out, kl=_budgets(args.kl))
    print(table)
    print(f"report: {out / 'report.html'}")
    if args.wandb:
        from bench.report import tidy
        from bench.tracking import log_report

        images = sorted(out.glob("*.png"))
        print(f"wandb: {log_report(study_dir.name, tidy(study_dir), images, project_root())}")
    return 0


def _budgets(text: str | None) -> list[float] | None:
    """--kl 0.5,1,2 as KL budgets in nats per sequence (None: the report's defaults)."""
    if not text:
        return None
    try:
        budgets = [float(x) for x in text.split(",")]
    except ValueError as err:
        raise ConfigError(f"--kl {text!r}: give KL budgets in nats per sequence, e.g. --kl 0.5,1,2") from err
    if any(b < 0 for b in budgets):
        raise ConfigError(f"--kl {text!r}: KL budgets are >= 0 nats")
    return budgets


def cmd_world(args: argparse.Namespace) -> int:
    import json

    from bench.config import load_spec
    from bench.sources.toy import world, world_dir

    spec = load_spec(args.overrides)
    if args.dry_run:
        print(
            f"toy world folder: {world_dir(spec)} "
            f"({'cached' if (world_dir(spec) / 'world.json').exists() else 'not built'})"
        )
        return 0
    _quiet_libraries()
    t0 = time.perf_counter()
    folder = world(spec)
    summary = json.loads((folder / "world.json").read_text())
    print(f"toy world: {folder} (ready in {time.perf_counter() - t0:.1f} s)")
    print(f"  build timings (s): {summary['timings']}")
    print(f"  diagnostics: {summary['diagnostics']}")
    return 0


def _first_sentence(yaml_text: str) -> str:
    """The first sentence of a YAML file's header comment (its leading '#' lines joined)."""
    header = []
    for line in yaml_text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:].strip())
    joined = " ".join(header)
    end = re.search(r"[.:]\s+(?=[A-Z])", joined)  # a sentence ends before a capital ("e.g. x" does not)
    return joined[: end.start() + 1] if end else joined


def cmd_ls(args: argparse.Namespace) -> int:
    """List a group's options (plurals work: `bench ls losses`); losses show paper and hyperparameters.
    Without a group: every group and its options."""
    import yaml

    if args.group is None:
        print("config groups (bench ls <group> for descriptions; choose one with <group>=<option>):")
        for group in GROUPS:
            listed = textwrap.fill(", ".join(options(group)), width=110, initial_indent=f"  {group:10s}",
                                   subsequent_indent=" " * 12, break_on_hyphens=False)  # fmt: skip
            print(listed)
        print(f"  {'judges':10s}eval.judge=<name>: bench ls judges")
        print(f"stages (bench run --stages a,b): {', '.join(STAGE_NAMES)}")
        return 0
    if args.group in ("judge", "judges"):  # not a config group: annotator folders + AlpacaEval's configs
        from bench.judge import available_judges

        print("\n".join(available_judges()))
        return 0
    group = {"losses": "loss", "models": "model", "datasets": "dataset", "launchers": "launcher"}.get(
        args.group, args.group
    )
    if group not in GROUPS:
        raise ConfigError(
            f"unknown config group {args.group!r}; groups: {', '.join(GROUPS)} (or judges)"
            f"{did_you_mean(group, GROUPS)}"
        )
    names = options(group)
    if args.name and args.name not in names:
        hint = did_you_mean(args.name, names)
        raise ConfigError(f"no {group} option {args.name!r}.{hint} Options: {', '.join(names)}")
    for name in [args.name] if args.name else names:
        text = (CONF_DIR / group / f"{name}.yaml").read_text()
        data = yaml.safe_load(text) or {}
        if group != "loss":  # the option's name and the first sentence of its header comment, whole
            wrapped = textwrap.fill(_first_sentence(text), width=110, initial_indent=f"{name:24s} ",
                                    subsequent_indent=" " * 25, break_on_hyphens=False)  # fmt: skip
            print(wrapped.rstrip() or name)
            continue
        params = {k: v for k, v in data.items() if k not in (*LOSS_META_KEYS, "defaults")}
        hyper = ", ".join(f"{k}={v}" for k, v in params.items())
        print(f"{name:14s} {data.get('paper', '')}  [{hyper}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run one run (or a grid) through all stages")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. loss=dpo loss.beta=1,2 seed=0")
    p.add_argument(
        "--stages",
        default=None,
        help=f"comma list of stages to run, of: {', '.join(STAGE_NAMES)} (default: all)",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and print the runs; compute nothing")
    p.add_argument(
        "--cfg", choices=["job"], default=None, help="print the resolved config (as `bench config`)"
    )
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("config", help="print the composed, resolved config of some overrides")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--dry-run", action="store_true", help="(always dry)")
    p.set_defaults(fn=cmd_config)
    p = sub.add_parser("validate", help="compose and validate overrides; print run ids")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--dry-run", action="store_true", help="(always dry)")
    p.set_defaults(fn=cmd_validate)
    p = sub.add_parser(
        "evaluate", help="evaluate a run folder, a model folder or the reference (no training)"
    )
    p.add_argument("target", help="a run folder, a saved model folder (config.json), or 'reference'")
    p.add_argument("overrides", nargs="*", help="Hydra overrides (for a run folder: dotted keys only)")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(fn=cmd_evaluate)
    p = sub.add_parser("sample", help="sample training pairs from a model, judge and pair them (onpolicy.*)")
    p.add_argument("overrides", nargs="*", help="overrides, e.g. onpolicy.judge=gold onpolicy.rule=rso")
    p.add_argument("--dry-run", action="store_true", help="validate and print the folder only")
    p.set_defaults(fn=cmd_sample)
    p = sub.add_parser("sweep", help="expand and validate a study file, then run what is not finished")
    p.add_argument("file", help="a study YAML, e.g. sweeps/toy_beta.yaml")
    p.add_argument("overrides", nargs="*", help="overrides applied to every run (e.g. launcher=local)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the run table only")
    p.add_argument("--wait", action="store_true", help="block until every run is done or failed")
    p.add_argument(
        "--shrink",
        action="store_true",
        help="run the study small: each variant's first grid point, a tiny stand-in model and data, a few "
        "steps, into results/<study>_shrunk (a check that it runs end to end before GPU hours are spent)",
    )
    p.set_defaults(fn=cmd_sweep)
    p = sub.add_parser("status", help="state of each run of a study, from its folders")
    p.add_argument("study")
    p.add_argument("--results", default=None, help="results folder (default: <project root>/results)")
    p.add_argument("--dry-run", action="store_true", help="(always read-only)")
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("report", help="results tables, plots and report.html of a study")
    p.add_argument("study")
    p.add_argument("--results", default=None, help="results folder (default: <project root>/results)")
    p.add_argument("--select", default="lc_win_rate", help="metric that picks each variant's best config")
    p.add_argument("--select-split", default="val", help="prompt split it is read on (the other is reported)")
    p.add_argument("--minimize", action="store_true", help="lower is better for --select (e.g. kl_seq)")
    p.add_argument(
        "--baseline", default=None, help="variant the paired comparisons are against (default: dpo, if run)"
    )
    p.add_argument("--out", default=None, help="folder to write the report to (default: <study>/report)")
    p.add_argument(
        "--kl", default=None, help="KL budgets of the equal-KL table, e.g. 0.5,1,2 (nats/sequence)"
    )
    p.add_argument("--wandb", action="store_true", help="also log the table and plots as a wandb run")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("world", help="build or show the toy world")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(fn=cmd_world)
    p = sub.add_parser("ls", help="list the options of a config group (e.g. `bench ls losses`)")
    p.add_argument(
        "group",
        nargs="?",
        default=None,
        help="model, dataset, loss, train, eval, launcher (or their plurals), judges",
    )
    p.add_argument("name", nargs="?", default=None, help="show only this option")
    p.add_argument("--dry-run", action="store_true", help="(always dry)")
    p.set_defaults(fn=cmd_ls)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come after flags (`bench sweep FILE --wait launcher=local`), which argparse alone refuses
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    _setup_logging()
    try:
        return int(args.fn(args))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of the output closed it (`bench ls | head`): nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # a full disk: the path and the fix, not a traceback (the run is sound)
        if not is_disk_full(err):
            raise
        full = err if isinstance(err, DiskFullError) else DiskFullError(err.filename or "a file")
        print(f"error: {full}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
