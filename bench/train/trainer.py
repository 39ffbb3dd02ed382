"""The one TRL subclass: every variant trains through DPOTrainer with one loss hook (the one trl import).

TRL keeps all of its loss branches in the private `_compute_loss`; we override it once. TRL still does the
tokenisation, collation, optimiser, schedule, accelerate plumbing and the fused log-prob head; we compute the
per-sequence statistics the same way for every variant and hand them to the variant's loss object. Nothing
here looks at a variant's name: only at what it declares (`needs_reference`, `needs_kl_pairs`,
`needs_token_logps`, `token_outputs`, `needs_scores`, `moving_reference`, `data_shape`).

Overriding private methods is a bet that TRL keeps them: `TRL_PRIVATE_API` records the signatures this class
was written against, and a test compares them with the installed TRL, so an upgrade that changes one fails
there, by name, instead of training something else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from trl import DPOTrainer

from bench.losses import PreferenceLoss, SequenceStats, TokenStats
from bench.sources.scores import SCORE_KEYS
from bench.train.klpairs import KL_COLUMNS, KLPairCollator, add_kl_completions, kl_view
from bench.train.more import (
    MORE_COLUMNS,
    MoreCollator,
    more_reference_views,
    more_stats,
    tokenise_more,
    unpaired_token_logps,
)
from bench.train.position_kl import position_kl_logps
from bench.train.refcache import cached_reference_logps, cached_tensors, pairs_key
from bench.train.scores import ScoreCollator
from bench.train.tokens import check_lengths, id_rows, single_bos
from bench.train.tokenview import TOKEN_COLUMNS, TokenRefCollator, scatter, split_rows

log = logging.getLogger(__name__)

# The private DPOTrainer methods overridden below, with the parameters TRL 1.16 gives them, and the private
# attributes read (`_metrics`: TRL's per-mode metric lists; `_signature_columns`: transformers' column
# filter).
TRL_PRIVATE_API: dict[str, tuple[str, ...]] = {
    "_prepare_dataset": ("self", "dataset", "processing_class", "args", "dataset_name"),
    "_set_signature_columns_if_needed": ("self",),
    "_precompute_ref_logps": ("self", "dataset", "name", "batch_size"),
    "_compute_loss": ("self", "model", "inputs", "return_outputs"),
}
TRL_PRIVATE_ATTRIBUTES = ("_metrics", "_signature_columns")


class VariantTrainer(DPOTrainer):  # type: ignore[misc]
    """DPOTrainer whose loss is a bench.losses variant over shared per-sequence statistics."""

    def __init__(
        self,
        *args: Any,
        variant: PreferenceLoss,
        refstats: dict[str, Any],
        live_reference: bool = False,
        **kwargs: Any,
    ):
        # Set before DPOTrainer.__init__, which prepares the data and precomputes reference statistics
        # through the hooks below.
        self.variant = variant
        self.refstats = refstats
        self.token_view = variant.needs_token_logps or bool(variant.token_outputs)
        # a live reference (one that moves: bench.train.moving_ref; or whose whole distribution is needed:
        # bench.train.position_kl) is `ref_model`, scored on every batch, never cached (build_loss refuses
        # one with KL pairs, whose reference log-probs are cached)
        # (online training's pairs are new every batch: their reference too is scored per batch)
        self.moving = variant.live_reference() or live_reference
        if "log_sum_sq_probs" in variant.token_outputs:
            # TRL's fused LM head computes log sum_v p(v)^2 only under `use_weighting`; its only other use is
            # in TRL's own loss, which _compute_loss below replaces
            kwargs["args"].use_weighting = True
        super().__init__(*args, **kwargs)
        missing = [name for name in TRL_PRIVATE_ATTRIBUTES if not hasattr(self, name)]
        if missing:  # a TRL or transformers upgrade renamed what the hooks below read: fail before training
            raise RuntimeError(
                f"DPOTrainer has no {', '.join(missing)} any more: bench/train/trainer.py reads them; "
                "update it for the installed TRL (pinned in pyproject.toml)"
            )
        if variant.needs_kl_pairs:  # training batches also carry the rows' KL pairs (bench.train.klpairs)
            self.data_collator = KLPairCollator(self.data_collator)
        if self.token_view and variant.needs_reference and not self.moving:  # and their per-token reference
            self.data_collator = TokenRefCollator(self.data_collator)
        if variant.needs_scores and variant.data_shape != "list":  # and the data's scores of each pair
            self.data_collator = ScoreCollator(self.data_collator)
        if variant.data_shape != "pairs":  # more completions, list scores, unpaired labels (bench.train.more)
            self.data_collator = MoreCollator(self.data_collator)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        total = len(dataset) if hasattr(dataset, "__len__") else 0
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        check_lengths(dataset, total, args.max_length)
        dataset = single_bos(dataset, processing_class)
        if self.variant.needs_kl_pairs:
            dataset = add_kl_completions(dataset)
        if "more" in dataset.column_names:
            parent = super()._prepare_dataset

            def prepare(view: Any, name: str) -> Any:  # TRL's tokenisation, exactly as for the pairs
                return single_bos(parent(view, processing_class, args, name), processing_class)

            dataset = tokenise_more(dataset, prepare, dataset_name)
        return dataset

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the columns a variant's declarations add (KL pairs, per-token reference, scores), which TRL's
        column filter would drop as unknown."""
        super()._set_signature_columns_if_needed()
        extra = KL_COLUMNS if self.variant.needs_kl_pairs else []
        extra = extra + (TOKEN_COLUMNS if self.token_view else [])
        extra = extra + (list(SCORE_KEYS) if self.variant.needs_scores else [])
        extra = extra + (MORE_COLUMNS if self.variant.data_shape != "pairs" else [])
        if extra:
            columns: list[str] = list(self._signature_columns or [])
            columns += [c for c in extra if c not in columns]
            self._signature_columns = columns  # type: ignore[assignment]  # typed None in transformers

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        """Reference log-probs of every pair (and of its KL pairs, if the variant needs them) from the
        shared cache (bench.train.refcache), computed once per reference model, tokenised pairs and truncation
        settings. Reference-free variants get none.

        At this point `self.model` still holds the reference weights (the policy starts from them), so no
        second model is ever loaded for training."""
        if self.variant.needs_reference and self.token_view:  # one pass gives the per-token values and sums
            lists = self._cached_reference_token_logps(dataset, name, batch_size)
            for side in ("chosen", "rejected"):
                dataset = dataset.add_column(f"ref_{side}_logps", [sum(row) for row in lists[side]])
                dataset = dataset.add_column(f"ref_{side}_token_logps", lists[side])
        elif self.variant.needs_reference:
            chosen, rejected = self._cached_reference_logps(dataset, name, batch_size, "")
            dataset = dataset.add_column("ref_chosen_logps", chosen.tolist())
            dataset = dataset.add_column("ref_rejected_logps", rejected.tolist())
        if self.variant.needs_kl_pairs:
            chosen, rejected = self._cached_reference_logps(kl_view(dataset), f"{name} KL", batch_size, "kl_")
            dataset = dataset.add_column("ref_kl_chosen_logps", chosen.tolist())
            dataset = dataset.add_column("ref_kl_rejected_logps", rejected.tolist())
        if self.variant.needs_reference and "more_ids" in dataset.column_names:  # a list's or gold's more
            columns: list[list[float]] = [[] for _ in range(len(dataset))]
            for j, view in enumerate(more_reference_views(dataset)):
                chosen, rejected = self._cached_reference_logps(
                    view, f"{name} more {j}", batch_size, f"more{j}_"
                )
                for row, c, r in zip(columns, chosen.tolist(), rejected.tolist(), strict=True):
                    row += [c, r]
            dataset = dataset.add_column("ref_more_logps", columns)
        return dataset

    def _reference_pass(self, pairs: Any, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(per-token log-probs, completion mask), float32 on the CPU, of each collated batch of `pairs` under
        the reference: `self.model`, which still holds the starting weights before training, or `ref_model`
        when the reference is another model (a round against the original reference: bench.train.rounds);
        rows [chosen; rejected]."""
        model: Any = self.ref_model if self.ref_model is not None else self.model
        loader = DataLoader(pairs, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False)
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for batch in loader:
                    batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
                    per_token, mask, _ = self._token_logps(model, batch)
                    yield per_token.float().cpu(), mask.cpu()
        finally:
            model.train(training)

    def _cached_reference_logps(
        self, pairs: Any, name: str, batch_size: int, prefix: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference (chosen, rejected) log-probs of tokenised pairs; the cache key goes to refstats."""
        args: Any = self.args  # a DPOConfig
        settings = {"max_length": args.max_length, "truncation": args.truncation_mode}
        key = pairs_key(id_rows(pairs), self.refstats["identity"], settings)

        def compute() -> tuple[torch.Tensor, torch.Tensor]:
            chosen, rejected = [], []
            for per_token, _ in self._reference_pass(pairs, batch_size):
                c, r = per_token.sum(1).chunk(2)
                chosen.append(c)
                rejected.append(r)
            return torch.cat(chosen), torch.cat(rejected)

        chosen, rejected, computed = cached_reference_logps(Path(self.refstats["cache_dir"]), key, compute)
        self.refstats.update(
            {f"{prefix}key": key, f"{prefix}computed": computed, f"{prefix}pairs": len(chosen)}
        )
        log.info(
            "reference log-probs of %d %s pairs: %s (cache key %s)",
            len(chosen),
            name,
            "computed" if computed else "reused from the shared cache",
            key,
        )
        return chosen, rejected

    def _cached_reference_token_logps(self, pairs: Any, name: str, batch_size: int) -> dict[str, list[Any]]:
        """Per-token reference log-probs of every pair, {"chosen": [row lists], "rejected": [...]}, from the
        shared cache (their own entry: the key says per_token)."""
        args: Any = self.args
        settings = {"max_length": args.max_length, "truncation": args.truncation_mode, "per_token": True}
        key = pairs_key(id_rows(pairs), self.refstats["identity"], settings)

        def compute() -> dict[str, torch.Tensor]:
            rows: dict[str, list[list[float]]] = {"chosen": [], "rejected": []}
            for per_token, mask in self._reference_pass(pairs, batch_size):
                lists = split_rows(per_token, mask)
                rows["chosen"] += lists[: len(lists) // 2]
                rows["rejected"] += lists[len(lists) // 2 :]
            out = {}
            for side, values in rows.items():
                out[f"{side}_flat"] = torch.tensor([v for row in values for v in row])
                out[f"{side}_lengths"] = torch.tensor([len(row) for row in values])
            return out

        tensors, computed = cached_tensors(Path(self.refstats["cache_dir"]), key, compute)
        self.refstats.update({"token_key": key, "token_computed": computed})
        log.info(
            "per-token reference log-probs of %d %s pairs: %s (cache key %s)",
            len(tensors["chosen_lengths"]),
            name,
            "computed" if computed else "reused from the shared cache",
            key,
        )
        return {
            side: [
                chunk.tolist()
                for chunk in torch.split(tensors[f"{side}_flat"], tensors[f"{side}_lengths"].tolist())
            ]
            for side in ("chosen", "rejected")
        }

    @staticmethod
    def _token_logps(model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Per-token completion log-probs (2B, T) (zero off the completion), the completion mask aligned with
        them (2B, T), and the fused head's output; rows [chosen; rejected]."""
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        out = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=labels,
            use_cache=False,
            fused_lm_head=True,
        )
        shift_mask = completion_mask[:, 1:]
        return out.log_probs[:, -shift_mask.size(1) :], shift_mask, out

    @staticmethod
    def _sequence_logps(model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed completion log-probs (2B,) and scored-token counts (2B,); rows [chosen; rejected]."""
        per_token, shift_mask, _ = VariantTrainer._token_logps(model, inputs)
        return per_token.sum(1), shift_mask.sum(1)

    def _token_stats(
        self,
        per_token: torch.Tensor,
        mask: torch.Tensor,
        out: Any,
        inputs: dict[str, Any],
        ref_per_token: torch.Tensor | None,
    ) -> TokenStats:
        """The batch's per-token views (TokenStats) from the policy pass and the reference's: the moving
        reference's pass, or the cached lists."""
        fields: dict[str, torch.Tensor] = {}
        mask = mask.to(per_token.dtype)
        pairs = {"": per_token, "mask": mask}
        if ref_per_token is not None:
            pairs["ref_"] = ref_per_token.to(per_token.dtype) * mask
        elif self.variant.needs_reference:
            pairs["ref_"] = scatter(inputs["ref_token_logps_flat"], mask).to(per_token.dtype)
        for name in self.variant.token_outputs:
            pairs[name] = getattr(out, name)[:, -mask.size(1) :].detach() * mask
        for prefix, values in pairs.items():
            chosen, rejected = values.chunk(2)
            if prefix == "mask":
                fields["chosen_mask"], fields["rejected_mask"] = chosen, rejected
            elif prefix in ("", "ref_"):
                fields[f"{prefix}chosen_logps"], fields[f"{prefix}rejected_logps"] = chosen, rejected
            else:
                fields[f"chosen_{prefix}"], fields[f"rejected_{prefix}"] = chosen, rejected
        return TokenStats(**fields)

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        mode = "train" if model.training else "eval"
        position_kl: dict[str, torch.Tensor] = {}
        ref_per_token = None
        if self.variant.needs_position_kl:  # full logits of both models (bench.train.position_kl)
            per_token, shift_mask, ref_per_token, kl_t = position_kl_logps(model, self.ref_model, inputs)
            out = None
            position_kl = dict(
                zip(("chosen_position_kl", "rejected_position_kl"), kl_t.sum(1).chunk(2), strict=True)
            )
        elif self.variant.data_shape == "unpaired":  # the rejected half is the KL pair: no gradient
            per_token, shift_mask, out = unpaired_token_logps(self._token_logps, model, inputs)
        else:
            per_token, shift_mask, out = self._token_logps(model, inputs)
        logps, tokens = per_token.sum(1), shift_mask.sum(1)
        ref_chosen = ref_rejected = None
        if ref_per_token is not None:
            ref_chosen, ref_rejected = ref_per_token.sum(1).chunk(2)
        elif self.moving:  # the reference as it is now, scored on this batch
            with torch.no_grad():
                ref_per_token = self._token_logps(self.ref_model, inputs)[0]
            ref_chosen, ref_rejected = ref_per_token.sum(1).chunk(2)
        elif self.variant.needs_reference:  # precomputed once (see _precompute_ref_logps)
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        token_stats = (
            self._token_stats(per_token, shift_mask, out, inputs, ref_per_token) if self.token_view else None
        )
        kl: dict[str, torch.Tensor] = {}
        if self.variant.data_shape == "unpaired":  # the rejected half, scored on the row's prompt
            kl["policy_kl_logps"] = logps.chunk(2)[1]
            if ref_rejected is not None:
                kl["ref_kl_logps"] = ref_rejected
        if self.variant.needs_kl_pairs:  # the rows' mismatched pairs; a reference point, so no gradient
            with torch.no_grad():
                kl_inputs = {k[3:]: v for k, v in inputs.items() if k.startswith("kl_")}
                kl["policy_kl_logps"] = self._sequence_logps(model, kl_inputs)[0]
            kl["ref_kl_logps"] = inputs["ref_kl_logps"]
        chosen_logps, rejected_logps = logps.chunk(2)
        chosen_tokens, rejected_tokens = tokens.chunk(2)
        stats = SequenceStats(
            chosen_logps,
            rejected_logps,
            chosen_tokens,
            rejected_tokens,
            ref_chosen,
            ref_rejected,
            **kl,
            tokens=token_stats,
            chosen_scores=inputs.get("score_chosen"),
            rejected_scores=inputs.get("score_rejected"),
            more=more_stats(self._sequence_logps, model, inputs),
            **position_kl,
            labels=inputs.get("label"),
        )
        result = self.variant(stats)
        loss = result.losses.mean()
        self._log_batch(mode, result.chosen_rewards.detach(), result.rejected_rewards.detach(), stats)
        if return_outputs:
            raise NotImplementedError("evaluation with outputs is not used by dpo-bench")
        return loss

    def _log_batch(
        self, mode: str, chosen: torch.Tensor, rejected: torch.Tensor, stats: SequenceStats
    ) -> None:
        gather = self.accelerator.gather_for_metrics
        metrics = self._metrics[mode]
        # unpaired data: chosen rewards are the desirable rows', rejected the undesirable ones' (else NaN)
        chosen, rejected = gather(chosen), gather(rejected)
        metrics["rewards/chosen"].append(chosen.nanmean().item())
        metrics["rewards/rejected"].append(rejected.nanmean().item())
        if not (chosen.isnan().any() or rejected.isnan().any()):
            metrics["rewards/accuracies"].append((chosen > rejected).float().mean().item())
            metrics["rewards/margins"].append((chosen - rejected).mean().item())
        metrics["logps/chosen"].append(gather(stats.policy_chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(stats.policy_rejected_logps.detach()).mean().item())
        metrics["tokens/chosen"].append(gather(stats.chosen_tokens.float()).mean().item())
        metrics["tokens/rejected"].append(gather(stats.rejected_tokens.float()).mean().item())
        if stats.policy_kl_logps is not None and stats.ref_kl_logps is not None:
            kl_logratio = (stats.policy_kl_logps - stats.ref_kl_logps).float()
            metrics["kl_pairs/logratio"].append(gather(kl_logratio).mean().item())
