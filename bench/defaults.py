"""The workflow's own settings (this checkout's ``config.yaml``), for the benches that time or
check what the workflow runs: their defaults follow the config instead of copying its values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def workflow_config() -> dict[str, Any]:
    """This checkout's ``config.yaml``, as written (no schema defaults filled in)."""
    return yaml.safe_load((REPO / "config.yaml").read_text())
