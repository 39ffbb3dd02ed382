"""What the policy is judged against, and whether the prompts are AlpacaEval's own.

Default: the reference model's own samples (the rows run_judge is given). With eval.reference_outputs=<file>
(a JSON list or JSONL of {instruction, output[, generator]}, e.g. AlpacaEval's baseline outputs), each policy
sample is judged against that file's outputs for its instruction, the instruction being the prompt text
(compared after strip()). Several rows with one instruction are several reference samples of that prompt.

The length_controlled_v1 GLM is only defined on AlpacaEval's instructions: it needs each pair's AlpacaEval
index (the key of instruction_difficulty and of the gamed baselines in df_gamed.csv). `alpaca_eval_index`
finds it by instruction text: from the csv's `instruction` column when it has one, else from the reference
outputs file, whose row order is AlpacaEval's (its annotations are in eval-set order: the csv's `index` is the
row position). It maps only when the prompts are exactly that instruction set, so the csv defines which
prompt set v1 accepts (805 for the real one).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.errors import ConfigError, UnavailableError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
GAMED_COLUMNS = ("index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline")
ALPACA_EVAL_SIZE = 805  # instructions in AlpacaEval's eval set


def load_reference_outputs(path: str | Path) -> list[dict[str, str]]:
    """Rows {instruction, output, generator?} of a JSON list or JSONL file; ConfigError naming file, row."""
    path = Path(path)
    if not path.is_file():
        raise UnavailableError(
            f"eval.reference_outputs={str(path)!r} does not exist (a JSON list or JSONL file)"
        )
    text = path.read_text()
    try:
        if text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise ConfigError(f"eval.reference_outputs={str(path)!r}: not JSON or JSONL ({err})") from err
    if not rows:
        raise ConfigError(f"eval.reference_outputs={str(path)!r} has no rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("instruction", "output")
        ):
            raise ConfigError(
                f"eval.reference_outputs={str(path)!r}, row {i}: need string fields 'instruction' and "
                f"'output', got {str(row)[:120]!r}"
            )
    return [
        {k: str(row[k]) for k in ("instruction", "output", "generator") if row.get(k) is not None}
        for row in rows
    ]


def reference_rows_from_file(
    policy_rows: list[dict[str, Any]], references: list[dict[str, str]], path: str | Path
) -> tuple[list[dict[str, Any]], str]:
    """Reference rows in generations.jsonl's shape for the policy's prompts, and the reference's name.

    ConfigError listing the first missing instructions (and how many) when a prompt has no output in the file,
    before any annotation is paid for.
    """
    outputs: dict[str, list[str]] = defaultdict(list)
    for row in references:
        outputs[row["instruction"].strip()].append(row["output"])
    prompts = {int(r["prompt_id"]): r["prompt"] for r in policy_rows}
    missing = sorted({p for p in prompts.values() if p.strip() not in outputs})
    if missing:
        shown = "; ".join(repr(m[:80]) for m in missing[:5])
        raise ConfigError(
            f"eval.reference_outputs={str(path)!r} has no output for {len(missing)} of the "
            f"{len(set(prompts.values()))} policy prompts (the instruction must equal the prompt text), "
            f"e.g. {shown}"
        )
    rows = [
        {"prompt_id": pid, "sample": j, "prompt": prompt, "completion": text}
        for pid, prompt in sorted(prompts.items())
        for j, text in enumerate(outputs[prompt.strip()])
    ]
    generators = {r["generator"] for r in references if "generator" in r}
    return rows, (generators.pop() if len(generators) == 1 else "reference_outputs")


def load_gamed_csv(path: str | Path) -> pd.DataFrame:
    """AlpacaEval's df_gamed.csv (local copy), checked for the columns the v1 GLM reads."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UnavailableError(
            f"eval.alpaca_eval_gamed_csv={str(path)!r} does not exist (a local df_gamed.csv)"
        )
    try:
        df = pd.read_csv(path)
    except (ValueError, OSError) as err:
        raise ConfigError(f"eval.alpaca_eval_gamed_csv={str(path)!r}: not a CSV ({err})") from err
    missing = [c for c in GAMED_COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(
            f"eval.alpaca_eval_gamed_csv={str(path)!r} lacks the columns {missing} that length_controlled_v1 "
            f"needs ({', '.join(GAMED_COLUMNS)}): is it AlpacaEval's df_gamed.csv?"
        )
    flags = df["not_gamed_baseline"]
    df["not_gamed_baseline"] = flags if flags.dtype == bool else flags.astype(str).str.lower().eq("true")
    return df


def alpaca_eval_instructions(
    gamed: pd.DataFrame, reference_outputs: list[dict[str, str]] | None
) -> dict[str, int] | None:
    """{instruction (stripped): AlpacaEval index}, from the csv's instruction column or the reference file."""
    indices = sorted(int(i) for i in gamed["index"].unique())
    if "instruction" in gamed.columns:
        pairs = gamed.drop_duplicates("index")[["instruction", "index"]].itertuples(index=False)
        return {str(text).strip(): int(idx) for text, idx in pairs}
    if reference_outputs is not None:
        order = list(dict.fromkeys(r["instruction"].strip() for r in reference_outputs))
        if len(order) == len(indices) and indices == list(range(len(indices))):
            return {text: i for i, text in enumerate(order)}
    log.warning(
        "length_controlled_v1 needs each prompt's AlpacaEval index: the gamed csv has no instruction column "
        "and no reference_outputs file in AlpacaEval's order (%d instructions) was given: minimal GLM used",
        len(indices),
    )
    return None


def prompt_index(prompts: set[str], mapping: dict[str, int] | None) -> dict[str, int] | None:
    """{prompt: AlpacaEval index} when the prompts are exactly the mapping's instruction set, else None."""
    if mapping is None:
        return None
    stripped = {p.strip(): p for p in prompts}
    if set(stripped) != set(mapping):
        log.info(
            "length_controlled_minimal: the %d prompts are not the gamed csv's %d instructions "
            "(length_controlled_v1 is only valid on AlpacaEval's own prompt set)",
            len(stripped),
            len(mapping),
        )
        return None
    if len(mapping) != ALPACA_EVAL_SIZE:
        log.warning(
            "length_controlled_v1 on %d instructions, not AlpacaEval's %d", len(mapping), ALPACA_EVAL_SIZE
        )
    return {original: mapping[s] for s, original in stripped.items()}
