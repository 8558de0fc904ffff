"""A warning raised by robustmap's own code fails the test run (pyproject.toml's filterwarnings)."""

import warnings

import pytest


def warn_from(module: str) -> None:
    """``warnings.warn`` run as code of ``module``: the warning is attributed to that module."""
    code = compile("warnings.warn('from ' + __name__, UserWarning)", f"<{module}>", "exec")
    exec(code, {"__name__": module, "warnings": warnings})


@pytest.mark.parametrize("module", ["robustmap", "robustmap.measure"])
def test_a_warning_from_robustmap_code_is_an_error(module):
    with pytest.raises(UserWarning, match=f"from {module}"):
        warn_from(module)


def test_a_warning_from_other_code_stays_a_warning():
    with warnings.catch_warnings(record=True) as caught:  # the test run's filters, kept
        warn_from("not_robustmap")
    assert [str(warning.message) for warning in caught] == ["from not_robustmap"]
