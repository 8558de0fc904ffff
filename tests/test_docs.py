"""The commands README gives are the ones CI runs, and they install the pinned versions."""

import re

from conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = readme_commands()[1]
    ci_lines = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] == test_command
    assert test_command == (
        'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" -c constraints.txt '
        "&& .venv/bin/pytest -q"
    )


def test_both_install_commands_use_the_constraints_and_it_pins_every_package():
    assert all("-c constraints.txt" in command for command in readme_commands()[:2])
    lines = (REPO / "constraints.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[^=\s]+", pin) for pin in pins), pins
    names = {pin.split("==")[0].lower().replace("_", "-") for pin in pins}
    assert {"tensorflow-cpu", "keras", "snakemake", "pandas", "statsmodels"} <= names
