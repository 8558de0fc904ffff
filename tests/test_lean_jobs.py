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
    "panels",
    "leaderboard",
    "provenance",
    "findings",
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
    for name in ("predict", "heatmaps", "search"):
        assert not setup_call(name).keywords, f"scripts/{name}.py must keep the TF set-up"


PANEL_WITHOUT_MODEL = """
import json, sys
import numpy as np, pandas as pd
from robustmap import epsilon_table, panels
rng = np.random.default_rng(0)
ids = ["a", "b"]
epsilons = pd.DataFrame({
    "image_id": ids * 2, "search": ["uniform"] * 2 + ["object"] * 2,
    "epsilon": [0.01, 0.2, 0.02, np.inf], "adversarial_label": [3, 4, 5, -1],
})
chosen = epsilon_table.extreme_images(epsilons, count=1)
order = [ids.index(i) for i in chosen["image_id"]]
panels.model_panel(
    name="m", chosen=chosen, images=rng.random((2, 8, 8, 3), dtype=np.float32)[order],
    labels=np.array([1, 2])[order], signs=rng.integers(-1, 2, (2, 8, 8, 3), dtype=np.int8)[order],
    heatmaps={k: rng.random((2, 8, 8), dtype=np.float32)[order] for k in ("gradcam", "saliency")},
    epsilons=epsilons, object_mask="soft", threshold="otsu", eps_max=1.0,
)
print(json.dumps([m for m in ("tensorflow", "keras") if m in sys.modules]))
"""


def test_a_panel_is_drawn_without_tensorflow():
    """The panels job rebuilds the adversarial images from the search's recorded gradient signs:
    drawing a whole panel (weights, adversarial images, figure) must not import TensorFlow."""
    run = subprocess.run(
        [sys.executable, "-c", PANEL_WITHOUT_MODEL],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
