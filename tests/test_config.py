"""The configuration is validated against schemas/config.schema.yaml before anything runs."""

import pytest
import yaml
from conftest import REPO, snakemake, write_config


def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def dry_run(tmp_path, config):
    write_config(tmp_path, config)
    return snakemake(tmp_path, "--dry-run", timeout=300)


def test_default_config_is_valid_and_plans_every_model(tmp_path):
    run = dry_run(tmp_path, default_config())
    assert run.returncode == 0, run.stderr[-3000:]
    for model in default_config()["models"]:
        assert f"results/{model}/predictions.parquet" in run.stdout


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(shard_sise=8), "'shard_sise' was unexpected"),
        (lambda c: c.update(shard_size=0), "0 is less than the minimum of 1"),
        (lambda c: c["dataset"].update(source="ftp"), "'ftp' is not one of"),
        (lambda c: c["dataset"].update(source="url"), "On instance['dataset']['sha256']"),
    ],
)
def test_bad_config_is_refused_with_an_error_naming_the_problem(tmp_path, edit, message):
    config = default_config()
    edit(config)
    run = dry_run(tmp_path, config)
    printed = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Error validating config file" in printed
    assert message in printed


def test_an_unknown_search_kind_is_refused_naming_the_known_ones(tmp_path):
    config = default_config()
    config["search"]["kinds"] = ["uniform", "sideways"]
    run = dry_run(tmp_path, config)
    assert run.returncode != 0
    assert "search.kinds: unknown search kind 'sideways'; known: uniform, object" in (
        run.stdout + run.stderr
    )
