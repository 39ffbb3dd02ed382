"""Every command README.md shows runs, in dry-run mode (make -n for make targets)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.helpers import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_readme_shows_the_two_commands_and_ci_calls_the_test_one() -> None:
    commands = readme_commands()
    assert commands[:2] == ["make main", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_every_readme_command_runs_dry(tmp_path) -> None:
    calls: list[tuple[str, list[str]]] = []
    for command in readme_commands():
        argv = shlex.split(command)
        if argv[0] == "make":
            argv = ["make", "-n", *argv[1:]]
        elif argv[0].endswith("bench"):
            argv = [sys.executable, "-m", "bench.cli", *argv[1:], "--dry-run"]
        elif argv[0].endswith("local_slurm.sh"):
            argv = ["bash", argv[0], *argv[1:], "--dry-run"]
        elif argv[0].endswith("python") and argv[1:3] == ["-m", "bench.run"]:
            # Hydra: print the config only; a multirun (-m a=1,2) is checked through its first grid point
            overrides = [o.split(",")[0] for o in argv[3:] if o != "-m"]
            argv = [sys.executable, "-m", "bench.run", *overrides, "--cfg", "job"]
        else:
            raise AssertionError(f"README command not covered by this test: {command}")
        command_word = next((w for w in ("report", "status") if w in argv), None)
        if command_word:  # a study must exist to report on it: make an empty one
            study = argv[argv.index(command_word) + 1]
            (tmp_path / "results" / study).mkdir(parents=True, exist_ok=True)
            argv += ["--results", str(tmp_path / "results")]
        calls.append((command, argv))

    def run(call: tuple[str, list[str]]) -> tuple[str, subprocess.CompletedProcess[str]]:
        return call[0], subprocess.run(call[1], cwd=REPO, capture_output=True, text=True, timeout=300)

    # two at a time (each is mostly a Python start-up and imports; they share no files but read-only ones)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for command, proc in pool.map(run, calls):
            assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
