"""Per-position KL between the reference's and the policy's next-token distributions, for variants that
declare `needs_position_kl` (TDPO's sequential KL).

    KL_t = sum_v ref(v | x, y<t) * (log ref(v | x, y<t) - log pi(v | x, y<t))   at each completion position t

It needs both models' whole next-token distributions, so the policy's forward returns full logits here
(TRL's fused log-prob head returns only the taken tokens' log-probs) and the reference is a live second model
scored on every batch (no cache can hold V numbers per token). The taken tokens' log-probs come from the same
logits, aligned with the completion mask as bench.train.trainer's `_token_logps` aligns them.
"""

from __future__ import annotations

from typing import Any

import torch


def _logits(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
    return out.logits[:, :-1].float()


def position_kl_logps(
    model: Any, reference: Any, inputs: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(policy per-token log-probs, completion mask, reference per-token log-probs, per-position KL), each
    (2B, T-1), zero off the completion; rows [chosen; rejected]. Gradient flows through the policy's."""
    mask = inputs["completion_mask"][:, 1:]
    targets = inputs["input_ids"][:, 1:, None]
    policy_logps = torch.log_softmax(_logits(model, inputs), -1)
    with torch.no_grad():
        ref_logps = torch.log_softmax(_logits(reference, inputs), -1)
    kl = (ref_logps.exp() * (ref_logps - policy_logps)).sum(-1)
    weight = mask.to(kl.dtype)
    return (
        policy_logps.gather(-1, targets)[..., 0] * weight,
        mask,
        ref_logps.gather(-1, targets)[..., 0] * weight,
        kl * weight,
    )
