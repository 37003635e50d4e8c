"""Read a spike-time table (CSV/TSV with columns ``unit`` and ``time`` in seconds) into the spike_times contract.

params: ``path`` (the table; given as the input too), ``t_start_s`` / ``t_stop_s`` (observation window;
default: from the first to just after the last spike), ``sep`` (column separator; default from the suffix).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from brainpipe.data import make_provenance, write
from brainpipe.errors import InputError
from brainpipe.stages._runner import cli, stage

INPUTS = {"table": "spike-time table: CSV/TSV with columns unit, time (s)"}
OUTPUTS = {"spikes": "spike_times .nc"}


def read_spike_table(path, t_start_s=None, t_stop_s=None, sep=None) -> xr.Dataset:
    """Parse a unit/time table into a spike_times dataset (units sorted by label)."""
    sep = sep or ("\t" if str(path).endswith((".tsv", ".tab")) else ",")
    try:
        df = pd.read_csv(path, sep=sep, dtype={"unit": str})
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"{path}: cannot be read as a {'TSV' if sep == chr(9) else 'CSV'} table ({err})") from None
    missing = {"unit", "time"} - set(df.columns)
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(sorted(missing))} (found {', '.join(map(str, df.columns))}); "
            "a spike table needs columns 'unit' and 'time' (seconds)"
        )
    t = pd.to_numeric(df["time"], errors="coerce").to_numpy(dtype=np.float64)
    if df.empty or not np.all(np.isfinite(t)):
        raise InputError(f"{path}: column 'time' must hold finite numbers of seconds, one spike per row")
    units, idx = np.unique(df["unit"].astype(str).to_numpy(), return_inverse=True)
    order = np.lexsort((idx, t))
    t0 = float(t.min()) if t_start_s is None else float(t_start_s)
    t1 = float(np.nextafter(t.max(), np.inf)) if t_stop_s is None else float(t_stop_s)
    return xr.Dataset(
        {
            "spike_time": ("spike", t[order], {"units": "s", "long_name": "spike time"}),
            "spike_unit": ("spike", idx[order].astype(np.int32), {"long_name": "index into unit"}),
        },
        coords={"unit": ("unit", units.astype(str), {"long_name": "unit identifier"})},
        attrs={"t_start_s": t0, "t_stop_s": t1, "source": str(path)},
    )


@stage
def run(inputs, outputs, params, log):
    ds = read_spike_table(inputs["table"], params.get("t_start_s"), params.get("t_stop_s"), params.get("sep"))
    write(ds, outputs["spikes"], "spike_times", make_provenance("ingest_spikes", params, [inputs["table"]]))


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
