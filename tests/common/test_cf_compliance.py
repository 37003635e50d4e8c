"""CF-1.10 compliance (the version brainpipe files declare) of what ``brainpipe.data.write`` writes, checked by the
IOOS compliance checker (``compliance-checker``, in the ``dev`` extra) through its Python API.

"Errors" are what the checker reports as high priority (its "Errors" section), plus any exception inside one of
its checks (it then checks nothing more of that kind, and its command line exits 2). Medium-priority "Warnings"
(e.g. CF's recommended dimension order T, Z, Y, X last) are not counted.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("compliance_checker")

from brainpipe.data import CONTRACTS, write  # noqa: E402

CF_CHECK = "cf:1.10"
KINDS = sorted(CONTRACTS)


@functools.cache
def _suite():
    from compliance_checker.runner import CheckSuite

    suite = CheckSuite()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its own deprecated SOS checkers, loaded with it
        suite.load_all_available_checkers()
    return suite


def cf_errors(paths: Iterable[str | os.PathLike]) -> dict[str, list[str]]:
    """Run the CF-1.10 check on each netCDF file in one process.

    Parameters
    ----------
    paths : iterable of str or path-like
        netCDF files.

    Returns
    -------
    dict of str to list of str
        For each file with errors, its path and one line per error: ``"<CF section>: <checker message>"``, or
        ``"exception in <check>: <error>"`` when a check failed to run. Files without errors are left out.
    """
    suite = _suite()
    out: dict[str, list[str]] = {}
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nc = suite.load_dataset(str(path))
            try:
                results, exceptions = suite.run_all(nc, [CF_CHECK], [], [])[CF_CHECK]
            finally:
                nc.close()
        lines = []
        for r in results:
            if r.weight >= 3 and r.value[0] != r.value[1]:  # 3: high priority, the report's "Errors"
                lines += [f"{r.name}: {m}" for m in r.msgs] or [f"{r.name}: (no message)"]
        lines += [f"exception in {name}: {exc[0]}" for name, exc in exceptions.items()]
        if lines:
            out[str(path)] = lines
    return out


def format_errors(errors: dict[str, list[str]]) -> str:
    """The checker's messages, file by file, for an assertion message."""
    return "\n".join(f"{p}:\n" + "\n".join(f"    {m}" for m in msgs) for p, msgs in errors.items())


@pytest.mark.parametrize("kind", KINDS)
def test_minimal_dataset_of_every_contract_is_cf_compliant(kind, make_valid, provenance, tmp_path):
    path = write(make_valid(kind, stamped=False), tmp_path / f"{kind}.nc", kind, provenance("cf-check"))
    errors = cf_errors([path])
    assert not errors, f"compliance-checker --test {CF_CHECK}:\n{format_errors(errors)}"


def test_checker_reports_what_brainpipe_fixes(make_valid, tmp_path):
    """The same content written by plain xarray (no CF step): the errors this module guards against are found."""
    ds = make_valid("calcium_traces", stamped=False).assign_attrs(Conventions="CF-1.10")
    assert ds["fluorescence"].attrs == {"units": "a.u."} and "long_name" not in ds["dff"].attrs
    path = tmp_path / "plain.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    errors = "\n".join(cf_errors([path])[str(path)])
    assert "long_name or/and standard_name is highly recommended for variable dff" in errors
    assert "The coordinate variable 'time' must not have the _FillValue attribute" in errors
    assert "Coordinate variable 'time' should have standard_name='time'" in errors
    assert 'units for fluorescence, "a.u." are not recognized by UDUNITS' in errors


def test_unit_fixes_flags_and_labels_pass(make_valid, provenance, tmp_path):
    """What writers hand over in practice: non-UDUNITS units, int64 flag_values on an int8 variable, string
    labels (unicode included), a model_fit with variables the contract does not name."""
    counts = make_valid("spike_counts", stamped=False)
    counts["split"].attrs.update(flag_values=[0, 1, 2], flag_meanings="train validation test")
    counts["behaviour"].attrs["units"] = "px"
    counts = counts.assign_coords(unit=["ü0", "u1", "u22"])
    fit = make_valid("model_fit", stamped=False)
    fit["log_rate"] = ("unit_post", np.array([0.1, -0.2]), {"units": "log(Hz)"})
    fit["speed_weight"] = ("covariate", np.array([1.0, 2.0]), {"units": "mixed"})
    fit = fit.assign_coords(covariate=("covariate", np.array(["speed", "x"])), lag=("lag", np.arange(3)))
    paths = [
        write(counts, tmp_path / "counts.nc", "spike_counts", provenance("cf-check")),
        write(fit, tmp_path / "fit.nc", "model_fit", provenance("cf-check")),
    ]
    errors = cf_errors(paths)
    assert not errors, format_errors(errors)
    with xr.open_dataset(paths[1], engine="h5netcdf") as back:
        assert back["log_rate"].attrs["units"] == "1" and "units" not in back["speed_weight"].attrs


def test_cf_errors_reports_each_file(make_valid, provenance, tmp_path):
    good = write(
        make_valid("metrics", stamped=False), tmp_path / "good.nc", "metrics", provenance("cf-check")
    )
    bad = tmp_path / "bad.nc"
    xr.Dataset({"v": ("x", np.arange(3.0))}, coords={"x": np.arange(3.0)}).to_netcdf(bad, engine="h5netcdf")
    errors = cf_errors([good, bad])
    assert list(errors) == [str(bad)] and any("variable v" in m for m in errors[str(bad)])
    assert str(Path(bad)) in format_errors(errors)
