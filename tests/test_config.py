"""The configuration is checked before anything runs: the schema, then the model entries and the
dataset source, each problem in one line naming the key."""

import re

import pytest
import yaml
from conftest import REPO, snakemake, write_config

from robustmap import catalog, checks


def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def dry_run(tmp_path, config, *extra):
    write_config(tmp_path, config)
    return snakemake(tmp_path, "--dry-run", *extra, timeout=300)


def planned_models(output: str) -> set[str]:
    return set(re.findall(r"results/([^/\s,]+)/predictions\.parquet", output))


def test_default_config_is_valid_and_plans_every_model(tmp_path):
    run = dry_run(tmp_path, default_config())
    assert run.returncode == 0, run.stderr[-3000:]
    assert planned_models(run.stdout) == {
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    }


def test_study_preset_plans_only_its_model(tmp_path):
    """README's command: the preset replaces config.yaml, whose three models are not merged in."""
    preset = REPO / "presets" / "study.yaml"
    run = dry_run(
        tmp_path, default_config(), "--configfile", str(preset), "--replace-workflow-config"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert planned_models(run.stdout) == {"mobilenet_v2"}
    assert yaml.safe_load(preset.read_text()) == {
        "dataset": {"source": "url"},
        "models": {"mobilenet_v2": {"zoo": "mobilenet_v2"}},
        "shard_size": 500,
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c.update(shard_sise=8),
            "config: (top level): Additional properties are not allowed "
            "('shard_sise' was unexpected)",
        ),
        (lambda c: c.update(shard_size=0), "config: shard_size: 0 is less than the minimum of 1"),
        (
            lambda c: c["dataset"].update(source="ftp"),
            "config: dataset.source: 'ftp' is not one of ['embedded', 'folder', 'zip', 'url']",
        ),
        (
            lambda c: c["search"].update(kinds=["sideways"]),
            "config: search.kinds: unknown search kind 'sideways'; known: uniform, object, "
            "background, box_object, box_background",
        ),
        (
            lambda c: c["search"].update(
                kinds=["uniform", "object"], pgd={"kinds": ["box_object"]}
            ),
            "config: search.pgd.kinds: 'box_object' not in search.kinds (uniform, object); PGD "
            "searches only kinds that FGSM searches",
        ),
        (
            lambda c: c["models"].update(mine={"zoo": "mobilenetv2"}),
            "config: models.mine.zoo: 'mobilenetv2' is not a zoo model (did you mean "
            "'mobilenet_v2'?); zoo names: efficientnet_b0, efficientnet_lite0, efficientnet_lite1,"
            " efficientnet_lite2, mobilenet_v2, resnet50",
        ),
        (
            lambda c: c["dataset"].update(source="url", url="https://example.org/t.zip"),
            "config: dataset.url: https://example.org/t.zip is not the official Tiny-ImageNet "
            "address, so nothing vouches for it; add `sha256:` (of t.zip) or a checksums.lock "
            "line for it",
        ),
    ],
)
def test_bad_config_fails_at_start_up_in_one_line_naming_the_key(tmp_path, edit, message):
    config = default_config()
    edit(config)
    run = dry_run(tmp_path, config)
    printed = run.stdout + run.stderr
    assert run.returncode != 0
    assert message in printed.splitlines()
    assert len(printed.splitlines()) <= 8, printed  # no schema dump
    assert not (tmp_path / "results").exists()


def test_official_url_needs_no_checksum(tmp_path):
    config = default_config()
    config["dataset"]["source"] = "url"
    run = dry_run(tmp_path, config)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            {"path": "/m/w.h5"},
            "models.m.path: w.h5 holds weights only, not which network they "
            "belong to; use `zoo: <name>` with `weights: /m/w.h5`",
        ),
        ({"path": "/nowhere/m.keras"}, "models.m.path: no such file: /nowhere/m.keras"),
        (
            {"path": "/m/model.onnx"},
            "models.m.path: model.onnx is not a model file (.keras, .pth, .pt)",
        ),
        (
            {},
            "models.m: give exactly one of `zoo: <name>` (efficientnet_b0, efficientnet_lite0, "
            "efficientnet_lite1, efficientnet_lite2, mobilenet_v2, resnet50) or `path: <file>`",
        ),
        (
            {"zoo": "mobilenet_v2", "weights": "/nowhere/w.h5"},
            "models.m.weights: no such file: /nowhere/w.h5",
        ),
        (
            {"zoo": "mobilenet_v2", "mirror": "http://127.0.0.1:1/w"},
            "models.m: a mirror is never "
            "trusted on first use; add `sha256:` (of the mirror's "
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5) or a checksums.lock "
            "line for it",
        ),
    ],
)
def test_model_entry_problems(entry, problem):
    assert checks.model_problems("m", entry, {}) == [problem]


def test_mirror_is_fine_with_a_publisher_md5_or_a_lock_entry():
    assert checks.model_problems("m", {"zoo": "resnet50", "mirror": "http://m"}, {}) == []
    locked = {catalog.ZOO_WEIGHTS["mobilenet_v2"].filename: "a" * 64}
    assert checks.model_problems("m", {"zoo": "mobilenet_v2", "mirror": "http://m"}, locked) == []


def test_every_schema_key_has_a_description_and_every_setting_a_default():
    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    model_keys = schema["properties"]["models"]["additionalProperties"]["properties"]
    undescribed, undefaulted = [], []
    for section, spec in schema["properties"].items():
        keys = {section: spec} | {
            f"{section}.{k}": v for k, v in spec.get("properties", {}).items()
        }
        keys |= {f"models.*.{k}": v for k, v in model_keys.items()} if section == "models" else {}
        undescribed += [key for key, value in keys.items() if "description" not in value]
        undefaulted += [
            key
            for key, value in keys.items()
            if "default" not in value and not key.startswith("models")
        ]
    assert undescribed == [] and undefaulted == []
