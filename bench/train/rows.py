"""The training rows a variant gets: the data's rows in the shape it declares, with or without the data's
scores and gold responses, checked before any compute (preflight) and again when training starts."""

from __future__ import annotations

import logging
from typing import Any

from bench.core.errors import ConfigError
from bench.sources.scores import require_scores, without_scores
from bench.sources.shapes import to_shape

log = logging.getLogger(__name__)


def variant_rows(spec: Any, variant: Any, data: Any) -> list[dict[str, Any]]:
    """The training rows of `data` (a DataSource) as `variant` trains on them: in the shape it declares
    (bench.sources.shapes.to_shape; ShapeError when the data cannot have it), with the data's scores on every
    row (ConfigError otherwise) when it declares `needs_scores`, and without any score or gold response
    otherwise: a variant that declares nothing gets exactly the pairs it got before any of these existed. A
    variant's notes on the scores (ODPO: pairs its offset ignores) are logged."""
    source = f"dataset={spec.dataset.name}"
    rows = data.training_rows()
    if variant.needs_scores:
        rows = data.add_scores(rows)
    rows = to_shape(rows, variant.data_shape, source, spec.loss.name)
    if variant.data_shape != "gold":
        rows = [{k: v for k, v in row.items() if k != "gold"} for row in rows]
    if not variant.needs_scores:
        return [{k: v for k, v in row.items() if k != "scores"} for row in without_scores(rows)]
    if variant.data_shape == "list":
        missing = [i + 1 for i, row in enumerate(rows) if "scores" not in row]
        if missing:
            raise ConfigError(
                f"loss={spec.loss.name} needs a score for every completion of each list, and "
                f"{len(missing)} of {len(rows)} lists of {source} have none (rows "
                f"{', '.join(map(str, missing[:10]))}): give each list `scores`, or choose a loss that "
                "uses the ranking only (e.g. loss=plackett_luce)"
            )
        return rows
    require_scores(rows, source, spec.loss.name)
    note = variant.score_notes([r["score_chosen"] for r in rows], [r["score_rejected"] for r in rows])
    if note:
        log.warning("loss=%s on dataset=%s: %s", spec.loss.name, spec.dataset.name, note)
    return rows
