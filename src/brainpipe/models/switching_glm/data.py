"""Sequences of a ``spike_counts`` dataset as padded batches for the switching GLM: counts, spike history through
the exponential basis, z-scored covariates, padding mask (:class:`Batch`), and the dtypes they run in."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import InputError
from brainpipe.preprocess.spikes import segments
from brainpipe.simulate.switching_glm import exp_basis
from brainpipe.training.device import resolve_device

DATA_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Batch:
    """Sequences padded to a batch: counts/history (B, T, N), covariates (B, T, C), mask (B, T), and the index
    of each (b, t) into the bins of the source dataset (-1 at padding)."""

    counts: torch.Tensor
    history: torch.Tensor
    covariates: torch.Tensor
    mask: torch.Tensor
    index: np.ndarray
    log_factorial: torch.Tensor | None = None  # sum_n log(y!) per bin, (B, T): constant, computed once
    _design: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def n_bins(self) -> int:
        return int(self.mask.sum())

    def valid_design(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The valid bins' counts (n, N) and the M-step's design ``z = [h, x, 1]`` (history, covariates, then the
        bias's column), (n, N + C + 1), in the data dtype: the same for every EM iteration, so built once."""
        if self._design is None:
            valid = self.mask.reshape(-1)
            n = valid.shape[0]
            H = self.history.reshape(n, -1)
            ones = torch.ones(n, 1, dtype=H.dtype, device=H.device)
            Z = torch.cat([H, self.covariates.reshape(n, -1), ones], 1)
            Y = self.counts.reshape(n, -1)
            self._design = (Y, Z) if bool(valid.all()) else (Y[valid], Z[valid])
        return self._design


class SequenceData:
    """The switching GLM's data side (a mixin of :class:`~brainpipe.models.switching_glm.SwitchingGLM`): the
    dtypes of the parameters and of the per-bin data term, the covariate matrix, and :meth:`batch`. Reads the
    hyperparameters ``device``, ``data_dtype``, ``use_covariates``, ``history_bins``, ``history_decay`` and the
    fitted ``cov_mean_``/``cov_std_``."""

    def _dtype(self, device: torch.device) -> torch.dtype:
        """Parameters, sums over bins and the forward-backward: float64 on CPU, float32 on a GPU (unless the data
        term is float64 too)."""
        return torch.float64 if device.type == "cpu" or self.data_dtype == "float64" else torch.float32

    def _data_dtype(self) -> torch.dtype:
        """The per-bin data term (counts, history features, linear predictors, rates): ``data_dtype``. float32 (the
        default) halves memory traffic and doubles SIMD width; every sum over bins is accumulated in the
        parameters' dtype, so objectives stay accurate to about 1e-7 relative."""
        return DATA_DTYPES[self.data_dtype]

    def _covariate_matrix(self, ds: xr.Dataset) -> tuple[np.ndarray, list[str]]:
        cols, names = [], []
        if self.use_covariates:
            for var, dim in (("behaviour", "behaviour_var"), ("stimulus", "stimulus_var")):
                if var in ds:
                    cols.append(np.asarray(ds[var].values, dtype=np.float64))
                    names += [f"{var}:{v}" for v in np.asarray(ds[dim].values).astype(str)]
        if not cols:
            return np.zeros((ds.sizes["time"], 0)), []
        return np.hstack(cols), names

    def batch(self, ds: xr.Dataset, split: str | None = None) -> Batch:
        """Cut a ``spike_counts`` dataset into sequences (one per segment) of the given split, padded.

        Parameters
        ----------
        ds : xarray.Dataset
            A ``spike_counts`` dataset (``counts``, ``split``; ``behaviour``/``stimulus`` used as covariates).
        split : {"train", "validation", "test"}, optional
            Keep only this split's segments; None keeps every bin.

        Returns
        -------
        Batch
            Counts, history features, covariates (z-scored with the fitted mean and SD once fitted), mask and the
            index of every (sequence, bin) into ``ds``'s bins, on the model's device.
        """
        if "counts" not in ds or "split" not in ds:
            raise InputError("SwitchingGLM needs a spike_counts dataset (variables 'counts' and 'split')")
        device = resolve_device(self.device)
        dtype = self._dtype(device)
        Y = np.asarray(ds["counts"].values, dtype=np.float64)
        X, _ = self._covariate_matrix(ds)
        if hasattr(self, "cov_mean_") and X.shape[1]:
            X = (X - self.cov_mean_) / self.cov_std_
        seg = segments(ds)
        keep = np.ones(len(seg), bool) if split is None else ds["split"].values == SPLIT_FLAGS[split]
        ids = np.unique(seg[keep])
        if ids.size == 0:
            raise InputError(f"no bins in split {split!r}: nothing to fit or score")
        lengths = np.array([(seg == i).sum() for i in ids])
        B, T, N, C = ids.size, int(lengths.max()), Y.shape[1], X.shape[1]
        phi = exp_basis(self.history_bins, self.history_decay)
        counts = np.zeros((B, T, N))
        hist = np.zeros((B, T, N))
        cov = np.zeros((B, T, C))
        mask = np.zeros((B, T), bool)
        index = np.full((B, T), -1, dtype=np.int64)
        for b, i in enumerate(ids):
            rows = np.nonzero(seg == i)[0]
            n = rows.size
            counts[b, :n] = Y[rows]
            for k, w in enumerate(phi):
                if k + 1 < n:
                    hist[b, k + 1 : n] += w * Y[rows[: n - k - 1]]
            cov[b, :n] = X[rows]
            mask[b, :n] = True
            index[b, :n] = rows
        as_t = lambda a: torch.as_tensor(a, dtype=self._data_dtype(), device=device)  # noqa: E731
        log_factorial = torch.lgamma(torch.as_tensor(counts, dtype=dtype, device=device) + 1).sum(-1)
        return Batch(
            as_t(counts), as_t(hist), as_t(cov), torch.as_tensor(mask, device=device), index, log_factorial
        )
