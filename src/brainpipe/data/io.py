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

from brainpipe._docs import fill_doc
from brainpipe.data import contracts as _c
from brainpipe.data import provenance as _prov
from brainpipe.data.atomic import atomic_output
from brainpipe.errors import ContractError, InputError


def cf_attributes(ds: xr.Dataset, kind: str) -> xr.Dataset:
    """Return a copy of ``ds`` with the CF-1.10 variable attributes and coordinate encodings of a brainpipe file.

    Idempotent, and it never changes values. Per variable and coordinate:

    * ``long_name``: kept when set; else the contract's description of the variable
      (:func:`brainpipe.data.contracts.long_name_of`); else the name with spaces for underscores.
    * ``units``: a string UDUNITS does not know and :data:`~brainpipe.data.contracts.UNIT_FIXES` lists is replaced
      (``"a.u."`` becomes ``"1"``), and the ``long_name`` says what it was ("... (arbitrary units)").
    * the ``time`` dimension coordinate: ``standard_name: "time"``, ``axis: "T"`` and a ``comment`` on its relative
      clock (its units become CF time units on disk only, see :func:`write`).
    * ``flag_values``/``flag_masks``/``valid_*``: cast to the variable's dtype when they hold the same numbers.
    * coordinates: encoding ``_FillValue: None`` (CF: no fill value on coordinate variables; a NaN is still
      written as NaN), which ``write`` and a zarr store written from the returned dataset both honour.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset; not modified.
    kind : str
        Its contract (a key of :data:`~brainpipe.data.contracts.CONTRACTS`), for the contract's descriptions.

    Returns
    -------
    xarray.Dataset
        A shallow copy with the attributes set.
    """
    out = ds.copy()
    for name in list(out.variables):
        var = out.variables[name]
        attrs = dict(var.attrs)
        if not str(attrs.get("long_name", "")).strip():
            attrs["long_name"] = _c.long_name_of(kind, str(name)) or str(name).replace("_", " ").strip()
        units = attrs.get("units")
        if isinstance(units, str) and units in _c.UNIT_FIXES:
            new_units, words = _c.UNIT_FIXES[units]
            if new_units is None:
                del attrs["units"]
            else:
                attrs["units"] = new_units
            if words not in str(attrs["long_name"]):
                attrs["long_name"] = f"{attrs['long_name']} ({words})"
        if name == "time" and var.dims == ("time",) and var.dtype.kind == "f" and attrs.get("units") == "s":
            attrs.setdefault("standard_name", "time")
            attrs.setdefault("axis", "T")
            attrs.setdefault("comment", _c.TIME_COMMENT)
        for key in ("flag_values", "flag_masks", "valid_min", "valid_max", "valid_range"):
            if key in attrs and var.dtype.kind in "iuf":
                attrs[key] = _as_dtype(attrs[key], var.dtype)
        var.attrs = attrs
        if name in out.coords:
            var.encoding = {**var.encoding, "_FillValue": None}
    return out


def _as_dtype(value: Any, dtype: np.dtype) -> Any:
    """``value`` as an array of ``dtype`` when that keeps its numbers; else ``value`` unchanged."""
    try:
        orig = np.asarray(value)
        cast = orig.astype(dtype)
    except (TypeError, ValueError):
        return value
    if orig.dtype.kind not in "iufb" or not np.array_equal(cast, orig):
        return value
    return cast


@fill_doc
def stamp(ds: xr.Dataset, kind: str, provenance: Mapping[str, Any], title: str | None = None) -> xr.Dataset:
    """Return ``ds`` with the contract, CF and provenance attributes set (CF variable attributes: :func:`cf_attributes`).

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset.
    %(kind)s
    provenance : mapping
        Its provenance record (:func:`brainpipe.data.make_provenance`).
    title : str, optional
        Its CF ``title`` when it has none (default: the contract's description).

    Returns
    -------
    xarray.Dataset
        A copy with the attributes set and a line added to its ``history``.
    """
    contract = _c.get_contract(kind)
    out = cf_attributes(ds, kind)
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


def _encodable(ds: xr.Dataset, netcdf: bool = True) -> xr.Dataset:
    """Make object arrays storable (as str); for netCDF, give the ``time`` dimension coordinate its CF time units
    (:data:`~brainpipe.data.contracts.TIME_UNITS_ON_DISK`; :func:`open_dataset` turns them back into ``"s"``)."""
    out = ds.copy()
    for name in list(out.variables):
        var = out.variables[name]
        if var.dtype.kind == "O":
            out[name] = var.astype(str)
    if netcdf and "time" in out.dims and "time" in out.variables:
        t = out.variables["time"]
        if t.dims == ("time",) and t.dtype.kind == "f" and t.attrs.get("units") == "s":
            t.attrs = {**t.attrs, "units": _c.TIME_UNITS_ON_DISK}
    return out


def _netcdf_encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """The netCDF encoding of each variable: compression of large numeric arrays; no ``_FillValue`` on
    coordinates (CF); the string labels of a dimension as a character array (a CF label variable: a string
    coordinate variable is not a CF coordinate variable, and checkers fail on one)."""
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        enc: dict[str, Any] = {}
        if var.dtype.kind in "fiub" and var.ndim >= 1 and var.size > 1024:
            enc.update(zlib=True, complevel=4)
        if name in ds.coords:
            enc["_FillValue"] = None
            if name in ds.dims and var.dims == (name,) and var.dtype.kind in "SU" and var.size:
                enc["dtype"] = "S1"
        if enc:
            encoding[str(name)] = enc
    return encoding


@fill_doc
def write(
    ds: xr.Dataset, path: str | os.PathLike, kind: str, provenance: Mapping[str, Any] | None = None
) -> Path:
    """Validate ``ds`` against contract ``kind`` and write it atomically to ``path`` (.nc or .zarr).

    When ``provenance`` is given, the contract/CF/provenance attributes are stamped first; the CF variable
    attributes (:func:`cf_attributes`) are set in any case, and the netCDF encoding follows CF-1.10 (see
    :mod:`brainpipe.data.contracts`).

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset to write.
    path : str or os.PathLike
        The file to write: ``.zarr`` for a zarr store, else netCDF (the folder is created).
    %(kind)s
    %(provenance)s
        None: ``ds`` must already carry one.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    brainpipe.errors.ContractError
        The dataset violates its contract (nothing is written).
    brainpipe.errors.OutputError
        ``path`` holds a file or folder that brainpipe did not write.

    Examples
    --------
    >>> from brainpipe.data import make_provenance, read, write
    >>> from brainpipe.simulate import simulate
    >>> sim = simulate("poisson_glm_network", {"n_neurons": 5, "duration_s": 10}, seed=0)
    >>> write(sim.data, "spikes.nc", "spike_times", provenance=make_provenance("example", seed=0))
    PosixPath('spikes.nc')
    >>> read("spikes.nc", "spike_times").sizes["unit"]
    5
    """
    path = Path(path)
    if kind not in _c.CONTRACTS:
        raise ContractError(
            str(path), [f"contract {kind!r} is not a known contract ({', '.join(sorted(_c.CONTRACTS))})"]
        )
    if provenance is not None:
        ds = stamp(ds, kind, provenance)
    ds = cf_attributes(ds, kind)
    problems = _c.check(ds, kind)
    if problems:
        raise ContractError(str(path), problems)
    ds = _encodable(ds, netcdf=path.suffix != ".zarr")
    with atomic_output(path) as tmp:
        if path.suffix == ".zarr":
            ds.to_zarr(tmp, mode="w", consolidated=True)
        else:
            encoding = _netcdf_encoding(ds)
            ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding, invalid_netcdf=False)
    return path


@fill_doc
def open_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Open a brainpipe file (netCDF or zarr) without validation; fully loaded into memory for .nc files.

    A zarr store opens lazily: :func:`read` reads its every chunk once.

    Parameters
    ----------
    %(path)s

    Returns
    -------
    xarray.Dataset
        The dataset, its ``time`` coordinate in float seconds.

    Raises
    ------
    brainpipe.errors.InputError
        One line naming the file and the cause: it does not exist, is empty, is not HDF5, is truncated (the sizes),
        is damaged (what the library said), or is a zarr store whose metadata is unreadable.
    """
    import json

    def _line(err: BaseException) -> str:
        return (" ".join(str(err).split()) or type(err).__name__)[:200]

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file does not exist (check the path, or run the stage that makes it)")
    again = "run the stage that makes it again"
    if path.suffix == ".zarr" or path.is_dir():
        try:
            return xr.open_zarr(path)
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            json.JSONDecodeError,
        ) as err:  # zarr: metadata problems
            raise InputError(
                f"{path}: cannot be opened as a zarr store ({type(err).__name__}: {_line(err)}); its metadata is "
                f"missing or damaged, or it is not a brainpipe output: {again}"
            ) from None
        except (
            RuntimeError
        ) as err:  # numcodecs/zarr codecs: a coordinate chunk (read on open) does not decode
            raise InputError(
                f"{path}: cannot be opened as a zarr store: a coordinate chunk is damaged or cut short "
                f"({type(err).__name__}: {_line(err)}); {again}"
            ) from None
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: cannot be opened as netCDF4/HDF5: it is empty (0 bytes); {again}")
    try:
        # the time axis is stored with CF time units (a placeholder epoch): read it as float seconds
        with xr.open_dataset(path, engine="h5netcdf", decode_times={"time": False}) as ds:
            ds = ds.load()
    except (OSError, RuntimeError) as err:  # h5py: not HDF5, truncated, a damaged header, checksum or chunk
        from brainpipe.io._common import hdf5_problem

        why = hdf5_problem(path, err)
        if why.startswith("is not"):
            why += "; is it a brainpipe output?"
        raise InputError(f"{path}: cannot be opened as netCDF4/HDF5 or zarr: it {why}; {again}") from None
    except (
        ValueError,
        LookupError,
        TypeError,
        UnicodeDecodeError,
    ) as err:  # h5netcdf/xarray decoding (a damaged
        # attribute: a bad value, a missing key, an unknown text encoding named in the file)
        raise InputError(
            f"{path}: cannot be opened as netCDF4/HDF5 or zarr: its netCDF structure is damaged or not a brainpipe "
            f"output ({type(err).__name__}: {_line(err)}); {again}"
        ) from None
    if "time" in ds.variables and ds["time"].attrs.get("units") == _c.TIME_UNITS_ON_DISK:
        ds["time"].attrs["units"] = "s"
    return ds


def read(path: str | os.PathLike, kind: str | None = None) -> xr.Dataset:
    """Open and validate a brainpipe file; ``kind`` (if given) must match the file's contract.

    A zarr store has every chunk read once (one chunk at a time) before the contract check, so a damaged or
    cut-short chunk is one :class:`~brainpipe.errors.InputError` line naming the variable, not an error later.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nc`` file or a ``.zarr`` store written by :func:`write`.
    kind : str, optional
        The contract the file must have (a key of :data:`brainpipe.data.CONTRACTS`); None: the one it names.

    Returns
    -------
    xarray.Dataset
        The validated dataset.

    Raises
    ------
    brainpipe.errors.InputError
        The file cannot be read (see :func:`open_dataset`).
    brainpipe.errors.ContractError
        The dataset violates its contract (every problem, one line each).

    Examples
    --------
    >>> from brainpipe.data import make_provenance, read, write
    >>> from brainpipe.simulate import simulate
    >>> sim = simulate("poisson_glm_network", {"n_neurons": 5, "duration_s": 10}, seed=0)
    >>> path = write(sim.truth, "truth.nc", "model_fit", provenance=make_provenance("example", seed=0))
    >>> truth = read("truth.nc", "model_fit")
    >>> truth["coupling"].dims
    ('unit_post', 'unit_pre')
    >>> read("truth.nc", "spike_counts")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    brainpipe.errors.ContractError: ...
    """
    ds = open_dataset(path)
    if Path(path).suffix == ".zarr" or Path(path).is_dir():
        for name, var in ds.variables.items():
            try:
                data = var.data  # an index variable is read here
                if hasattr(data, "blocks"):  # dask: one chunk at a time
                    for idx in np.ndindex(*data.numblocks):
                        data.blocks[idx].compute()
                else:
                    np.asarray(data)
            except (RuntimeError, ValueError, OSError, TypeError, KeyError) as err:  # numcodecs, zarr, numpy
                raise InputError(
                    f"{path}: variable '{name}' cannot be read from the zarr store ({type(err).__name__}: "
                    f"{' '.join(str(err).split())[:200]}); a chunk is damaged or cut short: run the stage that makes it again"
                ) from None
    problems = _c.check(ds, kind)
    if problems:
        raise ContractError(str(path), problems)
    return ds


@fill_doc
def validate_file(path: str | os.PathLike, kind: str | None = None) -> list[str]:
    """List the problems of a file against its contract, one line each (empty list when valid).

    Parameters
    ----------
    %(path)s
    kind : str, optional
        The contract to check against (default: the one the file names).

    Returns
    -------
    list of str
        The problems, each prefixed with the path; a file that cannot be read gives one line.
    """
    try:
        ds = open_dataset(path)
    except InputError as err:
        return [str(err)]
    return [f"{path}: {p}" for p in _c.check(ds, kind)]


def provenance_of(ds: xr.Dataset) -> dict[str, Any]:
    """The provenance a dataset carries, parsed from its JSON ``provenance`` attr.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset written by :func:`write` (or stamped by :func:`stamp`).

    Returns
    -------
    dict
        Stage, package version, git sha, params, inputs with their sha256, seed, device.
    """
    return _prov.parse(ds.attrs[_prov.PROVENANCE_ATTR])


def summarize(ds: xr.Dataset) -> str:
    """A human-readable summary (dims, variables, provenance) for ``brainpipe info``.

    Parameters
    ----------
    ds : xarray.Dataset
        A brainpipe dataset.

    Returns
    -------
    str
        Several lines: contract and version, dims, each coordinate and variable with its dims, dtype, units and
        range, the attrs, and the provenance.
    """
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
