"""Reading and writing contract files: validate before writing, write atomically, validate after reading.

netCDF4 through h5netcdf is the default (``.nc``); a path ending in ``.zarr`` is written as a zarr store, for
large arrays. Writes go to a temporary sibling first and are renamed into place, so a crash or a contract
violation never leaves a partial output under the final name.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.data import contracts as _c
from brainpipe.data import provenance as _prov
from brainpipe.data.atomic import atomic_output
from brainpipe.errors import ContractError, InputError


def stamp(ds: xr.Dataset, kind: str, provenance: Mapping[str, Any], title: str | None = None) -> xr.Dataset:
    """Return ``ds`` with the contract, CF and provenance attributes set."""
    contract = _c.get_contract(kind)
    out = ds.copy()
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    out.attrs.setdefault("Conventions", "CF-1.10")
    out.attrs.setdefault("title", title or contract.description)
    history = out.attrs.get("history", "")
    line = f"{now}: brainpipe {provenance.get('version', '?')} stage {provenance.get('stage', '?')}"
    out.attrs["history"] = f"{history}\n{line}".strip()
    out.attrs[_c.CONTRACT_ATTR] = kind
    out.attrs[_c.VERSION_ATTR] = contract.version
    out.attrs[_prov.PROVENANCE_ATTR] = _prov.dumps(provenance)
    return out


def _encodable(ds: xr.Dataset) -> xr.Dataset:
    """Make object/str arrays and bools storable in netCDF4 (bools as int8 with a flag attr)."""
    out = ds.copy()
    for name in list(out.variables):
        var = out.variables[name]
        if var.dtype.kind == "O":
            out[name] = var.astype(str)
    return out


def write(ds: xr.Dataset, path: str | os.PathLike, kind: str, provenance: Mapping[str, Any] | None = None) -> Path:
    """Validate ``ds`` against contract ``kind`` and write it atomically to ``path`` (.nc or .zarr).

    When ``provenance`` is given, the contract/CF/provenance attributes are stamped first. Raises
    :class:`~brainpipe.errors.ContractError` (nothing written) when the dataset violates its contract, and
    :class:`~brainpipe.errors.OutputError` when ``path`` holds a file or folder that brainpipe did not write.
    """
    path = Path(path)
    if kind not in _c.CONTRACTS:
        raise ContractError(str(path), [f"contract {kind!r} is not a known contract ({', '.join(sorted(_c.CONTRACTS))})"])
    if provenance is not None:
        ds = stamp(ds, kind, provenance)
    problems = _c.check(ds, kind)
    if problems:
        raise ContractError(str(path), problems)
    ds = _encodable(ds)
    with atomic_output(path) as tmp:
        if path.suffix == ".zarr":
            ds.to_zarr(tmp, mode="w", consolidated=True)
        else:
            encoding = {
                name: {"zlib": True, "complevel": 4}
                for name, var in ds.variables.items()
                if var.dtype.kind in "fiub" and var.ndim >= 1 and var.size > 1024
            }
            ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding, invalid_netcdf=False)
    return path


def open_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Open a brainpipe file (netCDF or zarr) without validation; fully loaded into memory for .nc files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file does not exist (check the path, or run the stage that makes it)")
    try:
        if path.suffix == ".zarr" or path.is_dir():
            return xr.open_zarr(path)
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except (OSError, ValueError) as err:
        raise InputError(
            f"{path}: cannot be opened as netCDF4/HDF5 or zarr ({type(err).__name__}: {str(err).splitlines()[0]}); "
            "is it a brainpipe output?"
        ) from None


def read(path: str | os.PathLike, kind: str | None = None) -> xr.Dataset:
    """Open and validate a brainpipe file; ``kind`` (if given) must match the file's contract."""
    ds = open_dataset(path)
    problems = _c.check(ds, kind)
    if problems:
        raise ContractError(str(path), problems)
    return ds


def validate_file(path: str | os.PathLike, kind: str | None = None) -> list[str]:
    """Problems of a file against its contract, one line each (empty list when valid)."""
    try:
        ds = open_dataset(path)
    except InputError as err:
        return [str(err)]
    return [f"{path}: {p}" for p in _c.check(ds, kind)]


def provenance_of(ds: xr.Dataset) -> dict[str, Any]:
    return _prov.parse(ds.attrs[_prov.PROVENANCE_ATTR])


def summarize(ds: xr.Dataset) -> str:
    """A human-readable summary (dims, variables, provenance) for ``brainpipe info``."""
    lines = [
        f"contract: {ds.attrs.get(_c.CONTRACT_ATTR, '?')} v{ds.attrs.get(_c.VERSION_ATTR, '?')}",
        "dims: " + ", ".join(f"{k}={v}" for k, v in ds.sizes.items()),
        "coordinates:",
    ]
    for name, var in ds.coords.items():
        lines.append(f"  {name} {tuple(var.dims)} {var.dtype}{_units(var)}{_range(var)}")
    lines.append("variables:")
    for name, var in ds.data_vars.items():
        lines.append(f"  {name} {tuple(var.dims)} {var.dtype}{_units(var)}{_range(var)}")
    other = {k: v for k, v in ds.attrs.items() if k not in (_prov.PROVENANCE_ATTR, "history")}
    lines.append("attributes:")
    lines += [f"  {k}: {v}" for k, v in other.items()]
    if _prov.PROVENANCE_ATTR in ds.attrs:
        try:
            rec = _prov.parse(ds.attrs[_prov.PROVENANCE_ATTR])
            lines.append("provenance:")
            for k in ("stage", "version", "git_sha", "seed", "device", "created"):
                lines.append(f"  {k}: {rec.get(k)}")
            lines.append(f"  params: {rec.get('params')}")
            for inp in rec.get("inputs", []):
                lines.append(f"  input: {inp.get('path')} sha256={str(inp.get('sha256'))[:16]}...")
        except ValueError as err:
            lines.append(f"provenance: unreadable ({err})")
    return "\n".join(lines)


def _units(var: xr.DataArray) -> str:
    u = var.attrs.get("units")
    return f" [{u}]" if u else ""


def _range(var: xr.DataArray) -> str:
    if var.dtype.kind in "fiu" and var.size:
        vals = np.asarray(var.values)
        if vals.dtype.kind == "f" and not np.isfinite(vals).any():
            return ""
        return f" range {np.nanmin(vals):.4g}..{np.nanmax(vals):.4g}"
    return ""
