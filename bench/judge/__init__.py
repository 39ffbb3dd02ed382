"""The judge stage: AlpacaEval pairwise preferences of policy vs reference outputs, and their win rates.

This package is the one place that imports alpaca_eval (lazily: it takes seconds to import, needs
setuptools<81, and sets the root logger to INFO on import). A judge `<name>` (spec.eval.judge) is the
annotator folder annotators/<name>_judge/ (configs.yaml + prompt template); when a module
bench/judge/<name>.py exists, its `make_fn_completions(spec)` supplies the judge as a Python callable, so no
API is ever called for the toy judge.

Every prompt's n_policy x n_reference sample pairs are judged (ARCHITECTURE.md, The toy world): pairs of one
prompt share samples, so standard errors average the pairs of a prompt first and then go across prompts.
The length-controlled win rate is AlpacaEval's `length_controlled_minimal` GLM computed offline
(`lc_win_rate_minimal`): its `get_length_controlled_winrate` always downloads df_gamed.csv from the hub.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import ConfigError
from bench.records import atomic_dir

if TYPE_CHECKING:
    import pandas as pd

    from bench.config import RunSpec

log = logging.getLogger(__name__)
ANNOTATORS_DIR = Path(__file__).parent / "annotators"
ANNOTATOR_SUFFIX = "_judge"  # judge "toy" <-> annotators/toy_judge/
POLICY, REFERENCE = "policy", "reference"  # generator names: output_2 and output_1 in AlpacaEval's terms
ID_COLUMNS = ["prompt_id", "policy_sample", "reference_sample"]
LC_GLM = "length_controlled_minimal"

__all__ = [
    "annotations_path",
    "available_judges",
    "check_judge",
    "lc_win_rate_minimal",
    "load_annotations",
    "run_judge",
    "win_rates",
]


@contextlib.contextmanager
def _quiet_alpaca_eval_import() -> Iterator[None]:
    """Import alpaca_eval without its side effects on the process: it sets the root logger to INFO on import
    (annotators/base.py) and warns that pkg_resources is deprecated."""
    root = logging.getLogger()
    level = root.level
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            yield
    finally:
        root.setLevel(level)


def available_judges() -> list[str]:
    """Judge names with an annotator folder: the folders are the registry, there is no second list."""
    return sorted(
        p.parent.name.removesuffix(ANNOTATOR_SUFFIX)
        for p in ANNOTATORS_DIR.glob(f"*{ANNOTATOR_SUFFIX}/configs.yaml")
    )


def _annotator_config(name: str) -> Path:
    path = ANNOTATORS_DIR / f"{name}{ANNOTATOR_SUFFIX}" / "configs.yaml"
    if not path.is_file():
        raise ConfigError(
            f"eval.judge={name!r} is not a known judge; available judges: {', '.join(available_judges())} "
            f"(each is a folder {ANNOTATORS_DIR}/<name>{ANNOTATOR_SUFFIX}/ with a configs.yaml)"
        )
    return path


def _fn_completions(name: str, spec: RunSpec) -> Callable[..., dict[str, list[Any]]] | None:
    """The judge's Python callable from bench/judge/<name>.py, or None when its configs.yaml names one."""
    if importlib.util.find_spec(f"{__name__}.{name}") is None:
        return None
    module = importlib.import_module(f"{__name__}.{name}")
    fn: Callable[..., dict[str, list[Any]]] = module.make_fn_completions(spec)
    return fn


def check_judge(spec: RunSpec) -> None:
    """Preflight: the judge exists and its callable can be built from the config (no alpaca_eval import)."""
    _annotator_config(spec.eval.judge)
    _fn_completions(spec.eval.judge, spec)


def annotations_path(spec: RunSpec, run_dir: Path) -> Path:
    """run_dir/judgments/<judge>/annotations.json: its existence marks the judge stage complete."""
    return Path(run_dir) / "judgments" / spec.eval.judge / "annotations.json"


def _by_prompt(rows: list[dict[str, Any]], side: str) -> dict[int, tuple[str, dict[int, str]]]:
    """{prompt_id: (prompt, {sample: completion})}, refusing duplicate (prompt_id, sample) rows."""
    out: dict[int, tuple[str, dict[int, str]]] = {}
    for row in rows:
        pid, sample = int(row["prompt_id"]), int(row["sample"])
        prompt, samples = out.setdefault(pid, (row["prompt"], {}))
        if row["prompt"] != prompt:
            raise ConfigError(f"{side} generations: prompt_id {pid} has two different prompts")
        if sample in samples:
            raise ConfigError(f"{side} generations: duplicate row for prompt_id {pid}, sample {sample}")
        samples[sample] = row["completion"]
    return out


def _pair_rows(
    policy_rows: list[dict[str, Any]], reference_rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """AlpacaEval's two inputs, one row per (prompt, policy sample, reference sample), in matching order.

    annotate_head2head otherwise merges on `instruction` (a cartesian product of all rows sharing a prompt,
    then drop_duplicates over whole rows); with is_ordered=True it merges row i with row i. So both sides are
    laid out pair by pair and merged by order, and the id columns ride along into the annotations.
    """
    policy, reference = _by_prompt(policy_rows, POLICY), _by_prompt(reference_rows, REFERENCE)
    if set(policy) != set(reference):
        only = sorted(set(policy) ^ set(reference))[:5]
        raise ConfigError(f"policy and reference generations cover different prompt_ids (e.g. {only})")
    outputs_1: list[dict[str, Any]] = []
    outputs_2: list[dict[str, Any]] = []
    for pid in sorted(policy):
        prompt, pol = policy[pid]
        if reference[pid][0] != prompt:
            raise ConfigError(f"prompt_id {pid}: the policy and reference rows have different prompts")
        for i, pol_text in sorted(pol.items()):
            for j, ref_text in sorted(reference[pid][1].items()):
                base = {"instruction": prompt, "prompt_id": pid}
                outputs_1.append({**base, "output": ref_text, "generator": REFERENCE, "reference_sample": j})
                outputs_2.append({**base, "output": pol_text, "generator": POLICY, "policy_sample": i})
    return outputs_1, outputs_2


def run_judge(
    spec: RunSpec, run_dir: Path, policy_rows: list[dict[str, Any]], reference_rows: list[dict[str, Any]]
) -> Path:
    """Judge every policy sample against every reference sample of its prompt through `alpaca_eval.evaluate`.

    Writes run_dir/judgments/<judge>/annotations.json (one record per pair) and leaderboard.csv in one rename,
    so a killed run leaves nothing; returns the annotations path, skipping the work when it exists.
    """
    name = spec.eval.judge
    config = _annotator_config(name)
    path = annotations_path(spec, run_dir)
    if path.exists():
        return path
    outputs_1, outputs_2 = _pair_rows(policy_rows, reference_rows)
    fn_completions = _fn_completions(name, spec)
    with _quiet_alpaca_eval_import():
        import alpaca_eval
        import pandas as pd

    t0 = time.perf_counter()
    extra = {} if fn_completions is None else {"fn_completions": fn_completions}
    leaderboard, annotations = alpaca_eval.evaluate(
        model_outputs=pd.DataFrame(outputs_2),
        reference_outputs=pd.DataFrame(outputs_1),
        annotators_config=config,
        name=POLICY,
        output_path=None,  # we write the files ourselves, atomically
        precomputed_leaderboard=None,
        caching_path=None,  # a second run with the cache crashes under pandas 3; the stage skips instead
        is_return_instead_of_print=True,
        sort_by="win_rate",
        fn_metric="get_winrate",
        annotation_kwargs={"is_ordered": True, "chunksize": None},  # one chunk: no per-128-row overhead
        **extra,
    )
    df = pd.DataFrame(annotations)
    _check_complete(df, len(outputs_1))
    df = df.astype({c: int for c in ID_COLUMNS}).sort_values(ID_COLUMNS, kind="stable").reset_index(drop=True)
    leaderboard["length_controlled_winrate"] = 100 * lc_win_rate_minimal(df)  # offline LC, minimal GLM
    leaderboard["lc_glm"] = LC_GLM
    with atomic_dir(path.parent) as tmp:
        df.to_json(tmp / "annotations.json", orient="records", indent=2, double_precision=15)
        leaderboard.to_csv(tmp / "leaderboard.csv")
    log.info("judge %s: %d pairs in %.1f s -> %s", name, len(df), time.perf_counter() - t0, path.parent)
    return path


def _check_complete(df: pd.DataFrame, expected: int) -> None:
    """Every pair must come back annotated: AlpacaEval drops or NaNs rows whose completion failed to parse."""
    missing = [c for c in [*ID_COLUMNS, "preference", "output_1", "output_2"] if c not in df.columns]
    if missing:
        raise RuntimeError(f"alpaca_eval returned annotations without columns {missing}")
    n_bad = int(df["preference"].isna().sum())
    if len(df) != expected or n_bad:
        raise RuntimeError(
            f"judge: expected {expected} annotated pairs, got {len(df)} rows ({n_bad} without one)"
        )
    if df.duplicated(ID_COLUMNS).any():
        raise RuntimeError(
            "judge: alpaca_eval returned duplicate (prompt_id, policy_sample, reference_sample)"
        )


def load_annotations(path: Path) -> pd.DataFrame:
    """annotations.json as a DataFrame (plain json, so pandas does not guess dates or dtypes)."""
    import pandas as pd

    return pd.DataFrame(json.loads(Path(path).read_text()))


def win_rates(annotations: pd.DataFrame) -> dict[str, float]:
    """Soft and hard (tau -> 0) win rates of output_2 (policy) with standard errors over prompts, and LC.

    preference is AlpacaEval's: 1 = reference wins, 2 = policy wins, 1.5 = tie, soft values in between (0 is
    AlpacaEval's legacy tie). Rows without prompt_id count as one prompt each.
    """
    import numpy as np
    import pandas as pd

    pref = annotations["preference"].astype(float).replace({0.0: 1.5})
    if pref.isna().any() or not pref.between(1, 2).all():
        raise ValueError("win_rates: every preference must be a number in [1, 2] (or 0 for a tie)")
    groups = annotations["prompt_id"] if "prompt_id" in annotations else pd.Series(range(len(pref)))
    per_prompt = (
        pd.DataFrame(
            {
                "prompt": groups.to_numpy(),
                "soft": (pref - 1).to_numpy(),
                "hard": np.select([pref > 1.5, pref == 1.5], [1.0, 0.5], 0.0),
            }
        )
        .groupby("prompt")
        .mean()
    )
    n = len(per_prompt)

    def stderr(x: pd.Series) -> float:
        return float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan

    return {
        "win_rate": float(per_prompt["soft"].mean()),
        "win_rate_stderr": stderr(per_prompt["soft"]),
        "win_rate_hard": float(per_prompt["hard"].mean()),
        "win_rate_hard_stderr": stderr(per_prompt["hard"]),
        "lc_win_rate": lc_win_rate_minimal(annotations),
    }


def lc_win_rate_minimal(annotations: pd.DataFrame) -> float:
    """AlpacaEval's length-controlled win rate with the `length_controlled_minimal` GLM, offline.

    Replicates glm_winrate._get_featurized_data for that formula without its hf_hub_download (the minimal
    formula uses neither instruction_difficulty nor the gamed baselines it downloads): preference - 1 as the
    soft label, std_delta_len = (len(output_1) - len(output_2)) in characters over its standard deviation,
    not_gamed_baseline = True, then AlpacaEval's own design matrix and cross-validated logistic fit, predicted
    at std_delta_len = 0 and averaged. Its standard error is 0 by construction: bootstrap over prompts for
    confidence intervals.
    """
    import numpy as np
    import pandas as pd
    import sklearn

    with _quiet_alpaca_eval_import():
        from alpaca_eval.metrics.glm_winrate import GLM_INFO, fit_LogisticRegressionCV, make_dmatrix_for_model

    info = GLM_INFO[LC_GLM]
    df = annotations.reset_index(drop=True)
    pref = df["preference"].astype(float).replace({0.0: 1.5}) - 1
    delta = (df["output_1"].str.len() - df["output_2"].str.len()).astype(float)
    sd = float(delta.std())
    if not math.isfinite(sd) or sd == 0:
        # No variation in length difference: the length term is absent (all deltas 0) or indistinguishable
        # from the intercept (a constant delta), so there is nothing to control for; report the raw rate.
        return float(pref.mean())
    if pref.notna().sum() < info["kwargs"]["n_splits"]:
        return math.nan  # AlpacaEval's GroupKFold needs at least n_splits pairs; too few to fit a GLM
    train = pd.DataFrame({"preference": pref, "std_delta_len": delta / sd, "not_gamed_baseline": True})
    test = pd.DataFrame({"not_gamed_baseline": True, "std_delta_len": np.zeros(len(train))})
    df_xy_train, df_x_test = make_dmatrix_for_model(train, test, formula=info["formula"])
    df_xy_train = df_xy_train[df_xy_train["preference"].notna()]
    # fit_LogisticRegressionCV turns on sklearn's metadata routing globally; keep that inside this call
    with sklearn.config_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sklearn 1.8+ deprecations inside AlpacaEval's call
        model = fit_LogisticRegressionCV(df_xy_train, "preference", is_ytrue_proba=True, **info["kwargs"])
    return float(model.predict_proba(df_x_test)[:, 1].mean())
