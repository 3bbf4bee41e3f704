"""The read commands load only what reading needs: never the search (``skiptune.tuner.search``),
and, except ``export`` (which may load the model), never torch.

Each command runs in a fresh interpreter on a copy of a small stored database (one written by
main at 2dac84c, in ``tests/storage/data``), which then reports the modules it imported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tuner.helpers import REPO, cli_env

DATABASE = REPO / "tests" / "storage" / "data" / "written-by-2dac84c.db"

# Runs one command of ``skiptune`` as its entry point would, then prints what it imported.
_PROBE = """
import json, sys
from skiptune import cli
sys.argv = ["skiptune", *sys.argv[1:]]
try:
    cli.main()
except SystemExit as e:
    code = e.code or 0
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def run_probe(*args: str, probe: str = _PROBE) -> tuple[int, list[str]]:
    result = subprocess.run([sys.executable, "-c", probe, *args], env=cli_env(), cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return int(report["code"]), list(report["modules"])


@pytest.mark.parametrize("command", [
    ["best"], ["front"], ["studies"], ["export", "--nfe", "3", "-o", "{tmp}/rho.json"],
    ["plot", "-o", "{tmp}/front.png"], ["report", "-o", "{tmp}/report.html"],
], ids=lambda c: c[0])
def test_a_read_command_does_not_import_the_search(command: list[str], tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    shutil.copyfile(DATABASE, db)
    args = [a.format(tmp=tmp_path) for a in command]
    code, modules = run_probe(*args, "--db", str(db))
    assert code == 0, f"skiptune {' '.join(args)} failed"
    assert "skiptune.tuner.results" in modules, "the probe did not reach the readers"
    searching = [m for m in modules if m.startswith("skiptune.tuner.search")]
    assert not searching, f"skiptune {args[0]} imported {searching}"
    # export imports torch before Ctrl-C is armed, as the commands that sample do: the
    # probe sees torch there, so its absence elsewhere is measured, not assumed.
    assert ("torch" in modules) == (args[0] == "export"), f"skiptune {args[0]}: torch"
    assert db.read_bytes() == DATABASE.read_bytes(), "reading changed the database"


def test_the_probe_sees_the_search_once_it_is_used() -> None:
    # The check can fail: asking skiptune.tuner for ``search`` imports the search package.
    probe = _PROBE.replace("cli.main()", "import skiptune.tuner; skiptune.tuner.search")
    code, modules = run_probe(probe=probe)
    assert code == 0 and "skiptune.tuner.search._run" in modules
