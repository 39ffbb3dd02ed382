"""Every loss variant's worked example, run: one docstring block per variant, one parser, one test.

Each bench/losses/<name>.py docstring ends its prose worked example with a literal block

    Check: beta=0.1                      (hyperparameters as key=value, or "defaults")
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.598139 chosen_rewards=0.1 rejected_rewards=-0.1

(lines indented deeper than "Check:" belong to the block, so a long batch may wrap at any space). The test
below is parametrised over the config group, not over a list kept here, so adding conf/loss/<name>.yaml
without a worked example fails; and the numbers a reader is shown are the numbers the code produces.
"""

from __future__ import annotations

import dataclasses
import importlib
import re

import pytest
import torch

from bench.losses import ListStats, SequenceStats, TokenStats, build_loss
from tests.helpers import loss_modules

MISSING = "needs a 'Check:' worked example in its docstring"
CHECK_LINE = re.compile(r"^(?P<indent>[ \t]*)Check:(?P<rest>.*)$", re.MULTILINE)
TOLERANCE = 1e-5  # the prose rounds to 6 decimals (error <= 5e-7); 1e-5 leaves room for float rounding only
# SequenceStats fields without a default. An example that does not use them gets zero counts, never a real
# length, so an example that forgot a count its loss reads usually fails (division by zero) instead of passing
# on lengths nobody wrote down.
REQUIRED_TOKENS = ("chosen_tokens", "rejected_tokens")
OUTPUTS = ("loss", "chosen_rewards", "rejected_rewards")
# Per-token views (TokenStats) are written token_<field>=a:b:c,d:e (rows by comma, tokens by colon); masks,
# summed log-probs and token counts of SequenceStats then follow from them, as the trainer makes them.
TOKEN_PREFIX = "token_"
# More completions (ListStats) are written more_<field>=a:b,c:d too (rows by comma, completions by colon);
# more_mask defaults to all ones. Unpaired rows give `labels` and B KL values (the rejected half).
MORE_PREFIX = "more_"
KL_FIELDS = ("policy_kl_logps", "ref_kl_logps")


def _require(ok: bool, message: str) -> None:
    # An explicit raise, not `assert`: pytest rewrites asserts in test modules and appends its own
    # introspection to the message, and the message is what a contributor reads in CI.
    if not ok:
        raise AssertionError(message)


def _scalar(text: str) -> object:
    """A hyperparameter value: bool, int, float, or else the string itself (e.g. divergence=js_divergence)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _pairs(section: str, text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for token in text.split():
        key, eq, value = token.partition("=")
        _require(
            bool(eq and key and value),
            f"has a malformed {section} entry {token!r} in its 'Check:' block (key=value)",
        )
        _require(key not in pairs, f"repeats {key!r} in the {section} of its 'Check:' block")
        pairs[key] = value
    return pairs


def _numbers(section: str, pairs: dict[str, str]) -> dict[str, list[float]]:
    numbers: dict[str, list[float]] = {}
    for key, value in pairs.items():
        if key.startswith((TOKEN_PREFIX, MORE_PREFIX)):
            continue  # parsed by _token_rows / _more_rows
        try:
            numbers[key] = [float(v) for v in value.split(",")]
        except ValueError:
            raise AssertionError(
                f"has a non-numeric {section} value {key}={value!r} in its 'Check:' block"
            ) from None
    return numbers


def parse_check(doc: str) -> tuple[dict[str, object], dict[str, list[float]], dict[str, list[float]]]:
    """(hyperparameters, SequenceStats fields, expected outputs) from the docstring's 'Check:' block.

    Raises AssertionError naming what is missing or malformed; messages read after "bench/losses/<name>.py ".
    """
    found = list(CHECK_LINE.finditer(doc))
    _require(bool(found), MISSING)
    _require(len(found) == 1, f"has {len(found)} 'Check:' blocks in its docstring; keep one")
    match = found[0]
    indent = len(match["indent"].expandtabs())
    # The block is the Check line and every following line indented deeper; it ends at a blank line or dedent.
    lines = [match["rest"]]
    for line in doc[match.end() :].splitlines()[1:]:
        if not line.strip() or len(line) - len(line.lstrip()) <= indent:
            break
        lines.append(line)
    block = " ".join(lines)
    head, has_batch, rest = block.partition("batch:")
    _require(bool(has_batch), "has a 'Check:' block without a 'batch:' line")
    batch_text, has_expect, expect_text = rest.partition("expect:")
    _require(bool(has_expect), "has a 'Check:' block without an 'expect:' line")

    head = head.strip()
    _require(bool(head), "has a 'Check:' line without hyperparameters (write key=value pairs, or 'defaults')")
    params = {} if head == "defaults" else {k: _scalar(v) for k, v in _pairs("hyperparameter", head).items()}

    batch_pairs = _pairs("batch", batch_text)
    batch = _numbers("batch", batch_pairs)
    tokens = _token_rows(batch_pairs)
    if tokens:
        batch.update(_sums(tokens))
    more = _more_rows(batch_pairs)
    if more:
        batch[MORE_PREFIX] = more  # type: ignore[assignment]  # carried to _stats
    _require(bool(batch), "has a 'Check:' block with an empty 'batch:' line")
    unknown = sorted(
        set(batch) - {f.name for f in dataclasses.fields(SequenceStats)} - {TOKEN_PREFIX, MORE_PREFIX}
    )
    _require(
        not unknown, f"has batch fields {unknown} in its 'Check:' block that SequenceStats does not have"
    )
    # One value per pair, and 2B for the KL pairs (each prompt with another row's chosen and rejected): a
    # length slip would otherwise broadcast silently or fail deep inside the loss.
    kl_per_row = 1 if "labels" in batch else 2
    sizes = {
        key: len(values) // kl_per_row if key in KL_FIELDS else len(values)
        for key, values in batch.items()
        if key not in (TOKEN_PREFIX, MORE_PREFIX)
    }
    _require(
        len(set(sizes.values())) == 1
        and all(len(batch[k]) % kl_per_row == 0 for k in KL_FIELDS if k in batch),
        f"has batch fields of inconsistent lengths in its 'Check:' block (B per pair field, 2B for "
        f"{' and '.join(KL_FIELDS)}): {sizes}",
    )

    expect = _numbers("expect", _pairs("expect", expect_text))
    _require("loss" in expect, "has a 'Check:' block whose 'expect:' line lacks loss=<batch mean>")
    unknown = sorted(set(expect) - set(OUTPUTS))
    _require(not unknown, f"has expect keys {unknown} in its 'Check:' block; allowed: {', '.join(OUTPUTS)}")
    _require(
        len(expect["loss"]) == 1,
        "has more than one loss value in its 'Check:' block (give the batch mean)",
    )
    return params, batch, expect


def _prefixed_rows(
    pairs: dict[str, str], prefix: str, fields: set[str], what: str
) -> dict[str, list[list[float]]]:
    """The `prefix`ed batch entries as {field: rows}, rows by comma and values within a row by colon."""
    rows: dict[str, list[list[float]]] = {}
    for key, value in pairs.items():
        if not key.startswith(prefix):
            continue
        name = key.removeprefix(prefix)
        _require(name in fields, f"has a {what} field {key!r} that the statistics do not have")
        try:
            rows[name] = [[float(v) for v in row.split(":")] for row in value.split(",")]
        except ValueError:
            raise AssertionError(f"has a non-numeric {what} value {key}={value!r}") from None
    return rows


def _token_rows(pairs: dict[str, str]) -> dict[str, list[list[float]]]:
    fields = {f.name for f in dataclasses.fields(TokenStats)} - {"chosen_mask", "rejected_mask"}
    rows = _prefixed_rows(pairs, TOKEN_PREFIX, fields, "per-token")
    if rows:
        _require(
            {"chosen_logps", "rejected_logps"} <= set(rows),
            "has per-token fields without token_chosen_logps and token_rejected_logps",
        )
        for name, values in rows.items():
            side = "chosen" if "chosen" in name else "rejected"
            lengths = [len(r) for r in rows[f"{side}_logps"]]
            _require(
                [len(r) for r in values] == lengths,
                f"has token_{name} rows of other lengths than the policy's",
            )
    return rows


def _more_rows(pairs: dict[str, str]) -> dict[str, list[list[float]]]:
    rows = _prefixed_rows(
        pairs, MORE_PREFIX, {f.name for f in dataclasses.fields(ListStats)}, "more-completions"
    )
    if rows:
        _require("logps" in rows, "has more-completions fields without more_logps")
        rows.setdefault("mask", [[1.0] * len(r) for r in rows["logps"]])
        rows.setdefault("tokens", [[0.0] * len(r) for r in rows["logps"]])
    return rows


def _sums(tokens: dict[str, list[list[float]]]) -> dict[str, list[float]]:
    """The SequenceStats fields the trainer derives from the per-token view; token_ keeps the rows."""
    out: dict[str, list[float]] = {}
    for side in ("chosen", "rejected"):
        out[f"policy_{side}_logps"] = [sum(r) for r in tokens[f"{side}_logps"]]
        out[f"{side}_tokens"] = [len(r) for r in tokens[f"{side}_logps"]]
        if f"ref_{side}_logps" in tokens:
            out[f"ref_{side}_logps"] = [sum(r) for r in tokens[f"ref_{side}_logps"]]
    out[TOKEN_PREFIX] = tokens  # type: ignore[assignment]  # carried to _stats
    return out


def _token_stats(rows: dict[str, list[list[float]]]) -> TokenStats:
    width = max(len(r) for side in ("chosen_logps", "rejected_logps") for r in rows[side])

    def pad(values: list[list[float]]) -> torch.Tensor:
        return torch.tensor([r + [0.0] * (width - len(r)) for r in values], dtype=torch.float64)

    fields = {name: pad(values) for name, values in rows.items()}
    for side in ("chosen", "rejected"):
        fields[f"{side}_mask"] = pad([[1.0] * len(r) for r in rows[f"{side}_logps"]])
    return TokenStats(**fields)


def _parse_module_check(
    name: str, doc: str | None
) -> tuple[dict[str, object], dict[str, list[float]], dict[str, list[float]]]:
    """parse_check with the variant's file named in the failure, so CI says which file to fix."""
    try:
        return parse_check(doc or "")
    except AssertionError as err:
        raise AssertionError(f"bench/losses/{name}.py {err}") from None


def _stats(batch: dict[str, list[float]]) -> SequenceStats:
    batch = dict(batch)
    rows = batch.pop(TOKEN_PREFIX, None)
    more = batch.pop(MORE_PREFIX, None)
    size = len(batch.get("policy_chosen_logps", []))
    fields: dict[str, torch.Tensor | TokenStats | ListStats] = {}
    if rows:
        fields["tokens"] = _token_stats(rows)  # type: ignore[arg-type]
    if more:
        fields["more"] = ListStats(
            **{k: torch.tensor(v, dtype=torch.float64) for k, v in more.items()}  # type: ignore[arg-type]
        )
    for key, values in batch.items():
        # Token counts are integers in training (the trainer counts tokens); log-probs float64 so that the
        # 1e-5 comparison measures the formula, not float32 rounding.
        dtype = torch.long if key.endswith("_tokens") else torch.float64
        fields[key] = torch.tensor(values, dtype=dtype)
    for key in REQUIRED_TOKENS:
        fields.setdefault(key, torch.zeros(size, dtype=torch.long))
    return SequenceStats(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", loss_modules(), ids=loss_modules())
def test_worked_example(name: str) -> None:
    doc = importlib.import_module(f"bench.losses.{name}").__doc__
    params, batch, expect = _parse_module_check(name, doc)
    out = build_loss(name, params)(_stats(batch))
    got = {
        "loss": out.losses.mean().reshape(1),
        "chosen_rewards": out.chosen_rewards,
        "rejected_rewards": out.rejected_rewards,
    }
    for key, values in expect.items():
        actual = got[key].detach().to(torch.float64)
        wanted = torch.tensor(values, dtype=torch.float64)
        assert actual.shape == wanted.shape, (
            f"bench/losses/{name}.py worked example: {key} = {actual.tolist()}, docstring gives {values}"
        )
        assert torch.allclose(actual, wanted, rtol=0, atol=TOLERANCE, equal_nan=True), (
            f"bench/losses/{name}.py worked example: {key} = {actual.tolist()}, docstring says {values}"
        )


def test_parser_rejects_docstring_without_check() -> None:
    # The failure a new variant without a worked example meets in CI, word for word.
    prose_only = "New loss.\n\nWorked example (checked by tests/...): beta = 0.1, loss = 0.598139.\n"
    with pytest.raises(AssertionError, match=re.escape(MISSING)):
        parse_check(prose_only)
    with pytest.raises(AssertionError) as err:
        _parse_module_check("newloss", prose_only)
    assert str(err.value) == "bench/losses/newloss.py needs a 'Check:' worked example in its docstring"
    with pytest.raises(AssertionError, match=re.escape("bench/losses/newloss.py " + MISSING)):
        _parse_module_check("newloss", None)  # a module with no docstring at all
