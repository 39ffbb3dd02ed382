"""Hydra's own entry point over the pipeline, for ad-hoc sweeps with Hydra's launchers:
`python -m bench.run -m loss.beta=1,2 seed=0,1 [hydra/launcher=submitit_slurm]`.

Errors are the harness's one-line errors, as from `bench`: a config error inside a run and a combination of
Hydra's flags it refuses (`-m --cfg job`: print each run's config with `bench config <overrides>` instead)."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from bench.config import CONF_DIR, GROUPS, build_spec
from bench.core.errors import ConfigError
from bench.pipeline import run_one


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    """One run of the composed config; with -m, one per point of the sweep, through Hydra's launcher."""
    choices = HydraConfig.get().runtime.choices
    OmegaConf.set_struct(cfg, False)
    cfg["choices"] = {g: choices[g] for g in GROUPS}
    try:
        run_one(build_spec(cfg))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def cli() -> None:
    try:
        main()
    except ValueError as err:
        # Hydra's refusal of a flag combination is a user's error; any other ValueError is a bug
        if "can be specified" not in str(err):
            raise
        hint = "for the config of a run of a sweep: bench config <its overrides>"
        print(f"error: {err} ({hint})", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
