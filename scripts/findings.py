"""Rule findings: the report's landing sections (findings, leaderboard, provenance) as rST."""

import json
from pathlib import Path

from robustmap import findings, landing, leaderboard, runtime, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0], tensorflow=False)
board = tables.read_parquet(sm.input.leaderboard)
found = findings.findings(
    board,
    tables.read_parquet(sm.input.per_class),
    tables.read_parquet(sm.input.statistics),
    min_class_images=sm.params.min_class_images,
)
section = landing.findings_section(found, leaderboard.display(board))
tables.write_bytes(sm.output.findings, section.encode())
record = json.loads(Path(sm.input.provenance).read_text())
tables.write_bytes(sm.output.provenance, landing.provenance_section(record).encode())
