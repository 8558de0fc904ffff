"""The report's landing page sections, as reStructuredText that report/workflow.rst includes:
the findings with the leaderboard under them, and the run's provenance."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from robustmap.findings import Finding, findings_rst, rst_escape


def findings_section(found: Sequence[Finding], leaderboard: pd.DataFrame) -> str:
    """``Findings`` (one sentence per question) and ``Leaderboard`` (the display table)."""
    table = leaderboard.to_html(index=False, border=0, classes="robustmap-leaderboard")
    return "\n".join(
        [
            _title("Findings"),
            findings_rst(found) if found else "No question could be answered from the tables.\n",
            _title("Leaderboard"),
            "One row per model, the most robust first (largest median epsilon of the strongest "
            "attack); 95% CIs in brackets; *differs from next*: the ``model_pair`` test against "
            "the next row's model. The same table as a file: `leaderboard.html`_.",
            "",
            ".. raw:: html",
            "",
            _indented(f'<div class="robustmap-scroll">{table}</div>'),
            "",
        ]
    )


def provenance_section(record: Mapping[str, Any]) -> str:
    """``Provenance``: software, commit, machine, weights, dataset and config, as a field list."""
    software = record["software"]
    runtimes = software["inference_runtimes"]
    names = {"tensorflow": "TensorFlow", "keras": "Keras", "snakemake": "Snakemake"}
    versions = [f"Python {software['python']}"]
    versions += [f"{label} {software[key] or 'not installed'}" for key, label in names.items()]
    versions.append(f"robustmap {software['robustmap'] or 'not installed'}")
    versions.append(
        "inference runtimes: "
        + (", ".join(f"{k} {v}" for k, v in sorted(runtimes.items())) or "none")
    )
    box = record["machine"]
    dataset = record["dataset"]
    archive = dataset["archive_sha256"]
    fields = {
        "Software": "; ".join(versions),
        "Git commit": record["git_commit"] or "not a git checkout",
        "Machine": f"{box['platform']}, {box['cpu'] or 'unknown CPU'} ({box['cpus']} CPUs)",
        **{
            f"Weights of {model}": f"{entry['file']}, SHA-256 {entry['sha256'] or 'not found'}"
            for model, entry in record["weights"].items()
        },
        "Dataset": (
            f"{dataset['source']} source, {dataset['files']} files (SHA-256 of the list "
            f"{dataset['files_sha256']}); label table SHA-256 {dataset['label_table_sha256']}"
            + (f"; archive SHA-256 {archive}" if archive else "")
        ),
        "Config": f"SHA-256 {config_digest(record['config'])} of the effective, merged config",
    }
    lines = [_title("Provenance"), "Everything below, in full: ``results/provenance.json``.", ""]
    lines += [f":{rst_escape(name)}: {rst_escape(str(value))}" for name, value in fields.items()]
    return "\n".join(lines) + "\n"


def config_digest(config: Mapping[str, Any]) -> str:
    """SHA-256 of the config as canonical JSON (sorted keys): equal configs, equal digests."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _title(text: str) -> str:
    return f"{text}\n{'-' * len(text)}\n"


def _indented(html: str) -> str:
    return "\n".join(f"   {line}" if line else "" for line in html.splitlines())
