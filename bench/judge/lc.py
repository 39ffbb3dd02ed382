"""AlpacaEval's length-controlled (LC) win rate, offline, and a cheap refit of it for the bootstrap.

AlpacaEval fits a GLM to the soft preferences: P(output_2 wins) = sigmoid(w_len * tanh(std_delta_len)
[+ w_diff * instruction_difficulty] + w_model), std_delta_len = (len(output_1) - len(output_2)) in characters
over its standard deviation, and reports the mean prediction at std_delta_len = 0. Its
`get_length_controlled_winrate` always downloads df_gamed.csv from the hub, so the featurisation of
glm_winrate._get_featurized_data is redone here from local data, then its own `make_dmatrix_for_model` and
`fit_LogisticRegressionCV` (L1, liblinear, C chosen by 5-fold GroupKFold) do the fit:

* length_controlled_minimal: length term + model term; needs nothing else, valid on any prompts.
* length_controlled_v1: + instruction_difficulty, and AlpacaEval's gamed baselines (verbose and concise
  versions of its reference) added as rows of weight regularize_to_baseline_lambda / 2, both read from a local
  df_gamed.csv; valid only on AlpacaEval's own instructions (bench.judge.references decides).

The bootstrap refits per resample with C fixed at the value the cross-validation chose on the full data (one
liblinear fit of the same objective with the resample's counts as sample weights, ~3 ms for 4096 pairs,
instead of 50 cross-validation fits): the refit is what makes LC intervals affordable.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.judge.registry import quiet_alpaca_eval_import

if TYPE_CHECKING:
    import pandas as pd

LC_GLM = "length_controlled_minimal"
LC_GLM_V1 = "length_controlled_v1"
N_SPLITS = 5  # GLM_INFO[...]["kwargs"]["n_splits"] in alpaca_eval 0.6.6; fewer pairs cannot be fitted


@dataclass(frozen=True)
class Gamed:
    """df_gamed.csv's rows as the v1 GLM uses them (preference in [0, 1], AlpacaEval's weights)."""

    std_delta_len: np.ndarray
    difficulty: np.ndarray
    not_gamed: np.ndarray
    pref: np.ndarray
    weight: np.ndarray

    def design(self) -> np.ndarray:
        return _design(np.tanh(self.std_delta_len), self.difficulty, self.not_gamed.astype(float))


@dataclass(frozen=True)
class LCData:
    """The GLM's inputs: our pairs (pref = P(output_2 wins), delta = len1 - len2 in characters) and, for v1,
    each pair's instruction difficulty and the gamed-baseline rows."""

    pref: np.ndarray
    delta: np.ndarray
    difficulty: np.ndarray | None = None
    gamed: Gamed | None = None

    @property
    def glm(self) -> str:
        return LC_GLM if self.difficulty is None else LC_GLM_V1


def lc_data(annotations: pd.DataFrame, gamed: pd.DataFrame | None = None) -> LCData:
    """LCData of annotations; v1 when `gamed` (df_gamed.csv) is given and the pairs' alpaca_eval_index values
    cover exactly the csv's instructions, else minimal."""
    df = annotations.reset_index(drop=True)
    pref = (df["preference"].astype(float).replace({0.0: 1.5}) - 1).to_numpy()
    delta = (df["output_1"].str.len() - df["output_2"].str.len()).astype(float).to_numpy()
    if gamed is None or "alpaca_eval_index" not in df or df["alpaca_eval_index"].isna().any():
        return LCData(pref, delta)
    index = df["alpaca_eval_index"].astype(int)
    # By the csv's `index` column: AlpacaEval looks difficulty up by row label of drop_duplicates("index"),
    # which is the same thing only when the csv's first rows are indices 0, 1, 2, ... in order.
    difficulty_of = gamed.drop_duplicates("index").set_index("index")["instruction_difficulty"].astype(float)
    if set(index) != set(difficulty_of.index.astype(int)):
        return LCData(pref, delta)  # not AlpacaEval's full instruction set: v1 is not defined
    with quiet_alpaca_eval_import():
        from alpaca_eval.metrics.glm_winrate import GLM_INFO

    lam = float(GLM_INFO[LC_GLM_V1]["regularize_to_baseline_lambda"])
    g = gamed[gamed["preference"].notna()]
    not_gamed = g["not_gamed_baseline"].to_numpy(bool)
    rows = Gamed(
        std_delta_len=g["std_delta_len"].to_numpy(float),
        difficulty=g["instruction_difficulty"].to_numpy(float),
        not_gamed=not_gamed,
        pref=g["preference"].to_numpy(float),
        # AlpacaEval's weights: 1 for non-gamed rows, lambda / 2 for each of the two gamed baselines
        weight=not_gamed.astype(float) + lam * (~not_gamed) / 2,
    )
    return LCData(pref, delta, difficulty_of.reindex(index.to_numpy()).to_numpy(float), rows)


def _design(tanh_len: np.ndarray, difficulty: np.ndarray | None, not_gamed: np.ndarray) -> np.ndarray:
    """The formula's columns (no intercept: the not_gamed_baseline column plays that role)."""
    cols = [tanh_len] + ([] if difficulty is None else [difficulty]) + [not_gamed]
    return np.column_stack(cols)


def _std(delta: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Sample standard deviation (ddof 1, as pandas), with frequency weights for a bootstrap resample."""
    w = np.ones_like(delta) if weights is None else weights
    n = w.sum()
    if n < 2:
        return math.nan
    mean = (w * delta).sum() / n
    return float(math.sqrt((w * (delta - mean) ** 2).sum() / (n - 1)))


def lc_fit(data: LCData) -> tuple[float, float | None]:
    """(LC win rate, the C chosen by cross-validation or None when no GLM was fitted), as AlpacaEval does.

    Degenerate cases, where AlpacaEval's own fit would fail or mean nothing: no variation in length difference
    -> the raw rate (nothing to control for); fewer than N_SPLITS pairs -> NaN (GroupKFold cannot split).
    """
    import pandas as pd
    import sklearn

    with quiet_alpaca_eval_import():
        from alpaca_eval.metrics.glm_winrate import GLM_INFO, fit_LogisticRegressionCV, make_dmatrix_for_model

    sd = _std(data.delta)
    if not math.isfinite(sd) or sd == 0:
        return float(data.pref.mean()), None
    if len(data.pref) < N_SPLITS:
        return math.nan, None
    info = GLM_INFO[data.glm]
    ours = pd.DataFrame(
        {"preference": data.pref, "std_delta_len": data.delta / sd, "not_gamed_baseline": True}
    )
    test = pd.DataFrame({"not_gamed_baseline": True, "std_delta_len": np.zeros(len(ours))})
    weight = None
    if data.difficulty is not None:
        assert data.gamed is not None
        ours["instruction_difficulty"] = test["instruction_difficulty"] = data.difficulty
        gamed = pd.DataFrame(
            {
                "preference": data.gamed.pref,
                "std_delta_len": data.gamed.std_delta_len,
                "instruction_difficulty": data.gamed.difficulty,
                "not_gamed_baseline": data.gamed.not_gamed,
            }
        )
        ours = pd.concat([gamed, ours], ignore_index=True)  # AlpacaEval's order: gamed rows first
        weight = np.concatenate([data.gamed.weight, np.ones(len(data.pref))])
    df_xy, df_x_test = make_dmatrix_for_model(ours, test, formula=info["formula"])
    # fit_LogisticRegressionCV turns on sklearn's metadata routing globally; keep that inside this call
    with sklearn.config_context(), warnings.catch_warnings():
        # sklearn 1.8+ deprecations inside AlpacaEval's call ("penalty is deprecated", "Inconsistent values")
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        model = fit_LogisticRegressionCV(
            df_xy, "preference", is_ytrue_proba=True, sample_weight=weight, **info["kwargs"]
        )
    return float(model.predict_proba(df_x_test)[:, 1].mean()), float(model.C_[0])


def lc_refit(data: LCData, C: float | None, weights: np.ndarray) -> float:
    """The LC win rate of a resample (pair weights = how often its prompt was drawn), at a fixed C.

    The same estimator as lc_fit (length standardised on the resample, soft labels as two weighted rows,
    L1 liblinear without intercept, gamed rows fixed) minus the choice of C by cross-validation. C=None: the
    full data had no length variation, so neither has a resample: its raw rate.
    """
    from sklearn.linear_model import LogisticRegression

    keep = weights > 0
    w, pref, delta = weights[keep], data.pref[keep], data.delta[keep]
    sd = _std(delta, w)
    if C is None or sd == 0:  # as lc_fit: no length variation (here or in the full data), the raw rate
        return float((w * pref).sum() / w.sum())
    if not math.isfinite(sd):
        return math.nan
    difficulty = None if data.difficulty is None else data.difficulty[keep]
    x = _design(np.tanh(delta / sd), difficulty, np.ones(len(w)))
    y, sw = pref, w
    if data.gamed is not None:
        x = np.vstack([data.gamed.design(), x])
        y, sw = np.concatenate([data.gamed.pref, pref]), np.concatenate([data.gamed.weight, w])
    # soft labels as in fit_LogisticRegressionCV: each row twice, label 1 weighted p, label 0 weighted 1 - p
    xd = np.vstack([x, x])
    yd = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    model = LogisticRegression(C=C, penalty="l1", solver="liblinear", fit_intercept=False, random_state=123)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn 1.8+ deprecates `penalty`; kept to match AlpacaEval's call
        model.fit(xd, yd, sample_weight=np.concatenate([y * sw, (1 - y) * sw]))
    coef = model.coef_[0]
    x_test = _design(np.zeros(len(w)), difficulty, np.ones(len(w)))
    pred = 1 / (1 + np.exp(-(x_test @ coef)))
    return float((w * pred).sum() / w.sum())


def lc_win_rate_minimal(annotations: pd.DataFrame) -> float:
    """AlpacaEval's length-controlled win rate with the `length_controlled_minimal` GLM, offline.

    Its standard error is 0 by construction: bootstrap over prompts (win_rates) for confidence intervals.
    """
    return lc_fit(lc_data(annotations))[0]
