"""Every bench file loads as it is used: scripts start (`python bench/X.py --help`), helper
modules import beside them. The benches are run by hand, so nothing else notices when a
refactor breaks one's imports.
"""

import subprocess
import sys

import pytest
from conftest import REPO

BENCH = REPO / "bench"
FILES = sorted(p.name for p in BENCH.glob("*.py"))


def _is_script(name: str) -> bool:
    return '__name__ == "__main__"' in (BENCH / name).read_text()


def test_the_bench_folder_is_listed() -> None:
    scripts = {name for name in FILES if _is_script(name)}
    assert {"scale_dataset.py", "search.py", "workflow.py"} <= scripts
    assert {"defaults.py", "runtimes.py"} <= set(FILES) - scripts


@pytest.mark.parametrize("name", FILES)
def test_bench_file_loads(name: str) -> None:
    if _is_script(name):
        command = [sys.executable, str(BENCH / name), "--help"]
    else:  # a helper: imported by its sibling scripts, with bench/ as sys.path[0]
        command = [sys.executable, "-c", f"import {name.removesuffix('.py')}"]
    done = subprocess.run(command, cwd=BENCH, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    if _is_script(name):
        assert done.stdout.startswith("usage:")
