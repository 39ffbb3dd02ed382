"""Hydra's own entry point over the pipeline, for ad-hoc sweeps with Hydra's launchers:
`python -m bench.run -m loss.beta=1,2 seed=0,1 [hydra/launcher=submitit_slurm]`."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from bench.config import CONF_DIR, GROUPS, build_spec
from bench.pipeline import run_one


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    """One run of the composed config; with -m, one per point of the sweep, through Hydra's launcher."""
    choices = HydraConfig.get().runtime.choices
    OmegaConf.set_struct(cfg, False)
    cfg["choices"] = {g: choices[g] for g in GROUPS}
    run_one(build_spec(cfg))


if __name__ == "__main__":
    main()
