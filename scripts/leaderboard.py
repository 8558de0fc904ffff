"""Rule leaderboard: one row per model from the study's tables, as Parquet and HTML."""

from robustmap import figures, leaderboard, runtime, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0], tensorflow=False)
board = leaderboard.leaderboard(
    *(tables.read_parquet(sm.input[key]) for key in leaderboard.INPUT_TABLES),
    bootstrap=sm.params.statistics["bootstrap"],
    seed=sm.params.statistics["seed"],
)
tables.write_parquet(sm.output.table, board)
title = "Leaderboard: the most robust model first (95% CIs in brackets)"
html = figures.html_table(leaderboard.display(board), title=title)
tables.write_bytes(sm.output.html, html.encode())
