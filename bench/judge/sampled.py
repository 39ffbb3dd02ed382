"""Judging sampled training completions (onpolicy.judge): any judge of the evaluation suite, pointwise or
pairwise, for the sample stage (bench.stages.sample).

  pointwise   gold          the data's true reward (the toy world's, an oracle no real setting has)
              toy           the toy world's judge score s (the length-biased judge is Bradley-Terry on it)
              reward_model  a sequence classifier's reward (eval.judge=reward_model's model)
              rubric        a local LM's expected score on Self-Rewarding's additive 5-point rubric (Yuan et
                            al. 2024; bench/judge/rubric.py): sampling only, onpolicy.judge_model's model
  pairwise    local_lm, any AlpacaEval annotator config: only a preference between two completions, through
              alpaca_eval's own PairwiseAnnotator (its prompt template, parser and position swap), so only the
              pair rule that needs no scores (random_pair) can use them

A pairwise verdict that does not parse is counted and reported (provenance.json), never read as a tie; more
than eval.judge_max_malformed of them fails the stage. onpolicy.judge_model=start makes the model the run
starts from its own judge (self-rewarding, Yuan et al. 2024, arXiv:2401.10020): with `rubric` as the paper
scores, with `local_lm` through AlpacaEval's pairwise prompt.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.errors import ConfigError, UnavailableError
from bench.judge import local_lm, reward_model, rubric
from bench.judge.api import check_api_judge
from bench.judge.registry import check_our_judge, fn_completions, quiet_alpaca_eval_import, resolve_judge
from bench.sources.pair_rules import pair_rule

if TYPE_CHECKING:
    from bench.sources import Sources
    from bench.specs import RunSpec

log = logging.getLogger(__name__)
POINTWISE = ("gold", "toy", "reward_model", "rubric")


def is_pointwise(spec: RunSpec) -> bool:
    return spec.onpolicy.judge in POINTWISE


def judge_spec(spec: RunSpec, start: Path | None = None) -> RunSpec:
    """The run's spec with the sampling judge in eval.judge / eval.judge_model, as the evaluation judges read
    them; judge_model=start becomes `start` (the model the run starts from) when it is known."""
    o = spec.onpolicy
    model = o.judge_model or spec.eval.judge_model
    if model == "start":
        model = str(start) if start is not None else "reference"
    return dataclasses.replace(spec, eval=dataclasses.replace(spec.eval, judge=o.judge, judge_model=model))


def check_sampling_judge(spec: RunSpec, sources: Sources) -> None:
    """Preflight: the judge exists, can run here, and gives what the pair rule needs."""
    o = spec.onpolicy
    rule = pair_rule(o.rule, o.rso_beta, o.rso_samples)
    if o.judge == "gold" and sources.data.gold() is None:
        raise ConfigError(
            f"onpolicy.judge=gold reads the data's true reward, and dataset={spec.dataset.name} has none "
            "(only the toy world does): use onpolicy.judge=reward_model with onpolicy.judge_model=<folder>, "
            "or a pairwise judge with onpolicy.rule=random_pair"
        )
    if o.judge == "toy" and sources.data.judge_score() is None:
        raise ConfigError(
            f"onpolicy.judge=toy is the toy world's judge, and dataset={spec.dataset.name} has none: use "
            "onpolicy.judge=reward_model, or a pairwise judge (local_lm, an AlpacaEval annotator) with "
            "onpolicy.rule=random_pair"
        )
    if o.judge in ("gold", "toy"):
        return
    if o.judge == "rubric":
        _check_rubric(spec, sources)
        return
    try:  # an unknown name: ConfigError with ours, AlpacaEval's, near matches
        judge = resolve_judge(o.judge)
    except ConfigError as err:
        gold = (
            "; sampling also takes onpolicy.judge=gold (the data's true reward: the toy world's) and "
            "onpolicy.judge=rubric (a local LM on Self-Rewarding's 5-point rubric)"
        )
        raise ConfigError(f"{_onpolicy_keys(err)}{gold}") from err
    if o.judge not in POINTWISE and rule.needs_scores:
        raise ConfigError(
            f"onpolicy.rule={o.rule} needs a score for every completion, and onpolicy.judge={o.judge} only "
            "says which of two completions it prefers: use onpolicy.rule=random_pair, or a pointwise judge "
            f"({', '.join(POINTWISE)})"
        )
    scoped = judge_spec(spec)
    try:  # the evaluation judges' own checks, which name eval.judge*: said here of onpolicy.judge*
        if judge.kind == "ours":
            check_our_judge(judge, scoped, sources)
        else:
            check_api_judge(judge.name, judge.config)
    except (ConfigError, UnavailableError) as err:
        raise _onpolicy_keys(err) from err


def _rubric_model(spec: RunSpec, sources: Sources, start: Path | None) -> str:
    """The rubric judge's model folder: onpolicy.judge_model (`start`: the model the run starts from;
    `reference`: the run's reference), else eval.judge_model."""
    scoped = judge_spec(spec, start)  # start -> its folder; in preflight the reference (same tokenizer)
    if not scoped.eval.judge_model:
        raise ConfigError(
            "onpolicy.judge=rubric needs a judge model: onpolicy.judge_model=start (the model the run starts "
            "from scores its own samples: self-rewarding), reference, or <model folder>"
        )
    return local_lm.judge_model_path(scoped, sources)


def _check_rubric(spec: RunSpec, sources: Sources) -> None:
    try:
        rubric.check(_rubric_model(spec, sources, None))
    except (ConfigError, UnavailableError) as err:
        raise _onpolicy_keys(err) from err


def _onpolicy_keys(err: Exception) -> Exception:
    """An evaluation judge's error, which names eval.judge*, said of the sampling judge's onpolicy.judge*."""
    renamed = (
        str(err)
        .replace("eval.judge_model=", "onpolicy.judge_model=")
        .replace("eval.judge=", "onpolicy.judge=")
    )
    return type(err)(f"sampling judge: {renamed}")


class SamplingJudge:
    """The sampling judge of one sample stage or one online run, built once: a reward model or a local LM
    loads at its first use and serves every part or batch after it. `start` is the model the run starts
    from (the judge for judge_model=start)."""

    def __init__(self, spec: RunSpec, sources: Sources, start: Path) -> None:
        self.spec, self.sources, self.start = spec, sources, start
        self.pointwise = is_pointwise(spec)
        self._score: Callable[[str, list[str]], list[float]] | None = None
        self._annotator: Any = None

    def scores(self, instruction: str, completions: list[str]) -> list[float]:
        """A pointwise judge's score of each completion of one prompt."""
        if self._score is None:
            self._score = self._scorer()
        return [float(s) for s in self._score(instruction, completions)]

    def _scorer(self) -> Callable[[str, list[str]], list[float]]:
        judge = self.spec.onpolicy.judge
        if judge == "gold":
            gold = self.sources.data.gold()
            assert gold is not None  # check_sampling_judge
            alpha = gold.alphas[0]
            return lambda _prompt, texts: [gold.reward(t, alpha) for t in texts]
        if judge == "toy":
            score = self.sources.data.judge_score()
            assert score is not None
            return lambda _prompt, texts: [score(t) for t in texts]
        if judge == "rubric":
            return rubric.RubricJudge(
                _rubric_model(self.spec, self.sources, self.start), self.spec.eval.judge_batch_size
            ).scores
        model = reward_model.make_fn_completions(judge_spec(self.spec, self.start), self.sources)
        return lambda prompt, texts: model.rewards([(prompt, t) for t in texts])

    def second_preferred(self, pairs: list[tuple[str, str, str]]) -> list[float | None]:
        """A pairwise judge's P(output_2 preferred) on each (instruction, output_1, output_2), through
        alpaca_eval's PairwiseAnnotator (its template, position swap and parser: preference 1..2 becomes
        p - 1); None where the verdict did not parse."""
        if not pairs:
            return []
        if self._annotator is None:
            self._annotator = self._pairwise_annotator()
        rows = [{"instruction": p, "output_1": a, "output_2": b} for p, a, b in pairs]
        verdicts: list[float | None] = []
        for row in self._annotator.annotate_pairs(rows):
            value = row.get("preference")
            ok = isinstance(value, int | float) and not math.isnan(value) and 1 <= value <= 2
            verdicts.append(float(value) - 1.0 if ok else None)
        return verdicts

    def _pairwise_annotator(self) -> Any:
        scoped = judge_spec(self.spec, self.start)
        judge = resolve_judge(scoped.eval.judge)
        fn = fn_completions(judge, scoped, self.sources)
        with quiet_alpaca_eval_import():
            from alpaca_eval.annotators import PairwiseAnnotator
        extra: dict[str, Any] = {"fn_completions": fn} if fn is not None else {}
        return PairwiseAnnotator(
            annotators_config=str(judge.config),
            caching_path=None,
            seed=self.spec.seed,
            is_avoid_reannotations=False,
            **extra,
        )
