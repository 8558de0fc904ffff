"""Jobs that run no model start without TensorFlow: its import costs seconds per job."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NO_MODEL_SCRIPTS = [
    "dataset",
    "labels",
    "shards",
    "compactness",
    "localisation",
    "merge_searches",
    "aggregate",
    "figures",
]
HEAVY = ("tensorflow", "keras")


def script_imports(name: str) -> str:
    """The script's top-level import statements, as source."""
    source = (REPO / "scripts" / f"{name}.py").read_text()
    tree = ast.parse(source)
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    return "\n".join(ast.unparse(node) for node in imports)


def setup_call(name: str) -> ast.Call:
    """The script's call of ``runtime.setup``."""
    tree = ast.parse((REPO / "scripts" / f"{name}.py").read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "runtime.setup"
    ]
    assert len(calls) == 1, f"scripts/{name}.py should call runtime.setup once"
    return calls[0]


@pytest.mark.parametrize("name", NO_MODEL_SCRIPTS)
def test_a_job_that_runs_no_model_imports_no_tensorflow(name):
    keywords = {k.arg: ast.unparse(k.value) for k in setup_call(name).keywords}
    assert keywords.get("tensorflow") == "False", f"scripts/{name}.py sets up TensorFlow"
    program = "\n".join(
        [
            "import json, sys",
            script_imports(name),
            "from robustmap import runtime",
            "runtime.setup(None, tensorflow=False)",
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))",
        ]
    )
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []


def test_jobs_that_run_a_model_still_make_tensorflow_deterministic():
    for name in ("predict", "heatmaps", "search", "panels"):
        assert not setup_call(name).keywords, f"scripts/{name}.py must keep the TF set-up"
