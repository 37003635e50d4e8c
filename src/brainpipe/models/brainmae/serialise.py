"""Saving and loading BrainMAE without pickle: a ``model_fit`` dataset or a torch weights file of tensors and
JSON (a mixin of :class:`~brainpipe.models.brainmae.BrainMAE`), and one encoder per outer fold in one file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.atomic import atomic_output
from brainpipe.errors import InputError
from brainpipe.models.base import state_to_variables, variables_to_state
from brainpipe.models.brainmae.network import BrainMAENet

if TYPE_CHECKING:
    from brainpipe.models.brainmae.estimator import BrainMAE


class Serialisation:
    """``save``/``load``, ``to_dataset``/``from_dataset`` of :class:`BrainMAE` (mixed into it)."""

    # -- save / load (no pickle) ------------------------------------------------------------------------------------
    def _meta(self) -> dict:
        return {"params": self.params, "n_rois": self.n_rois_, "seg_len": self.seg_len_, "format": FORMAT}

    def _state(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.net_.state_dict().items()}

    @classmethod
    def _from(cls, meta: dict, state: dict, device: str) -> BrainMAE:
        model = cls(**meta["params"])
        model.n_rois_, model.seg_len_ = int(meta["n_rois"]), int(meta["seg_len"])
        model.net_ = BrainMAENet(model.n_rois_, model.seg_len_, model._net_config())
        model.net_.load_state_dict(state)
        model.net_.to(device).eval()
        lin = getattr(model.net_, "lin_alpha", None)
        model.linear_alpha_ = None if lin is None else float(lin)
        return model

    def to_dataset(self) -> xr.Dataset:
        """Return the weights and hyperparameters as a ``model_fit`` dataset (role fit; no pickle).

        Returns
        -------
        xarray.Dataset
            One variable ``w__<parameter>`` per tensor, the ROI embeddings as ``roi_embedding`` (roi, feature),
            the hyperparameters in its attrs.
        """
        self._check_fitted()
        emb = self.roi_embeddings().astype(np.float64)
        ds = xr.Dataset(
            {
                **state_to_variables(self.net_.state_dict()),
                "roi_embedding": (("roi", "feature"), emb, {"long_name": "learned ROI embedding"}),
            },
            attrs={
                "model": self.model_name,
                "role": "fit",
                "format": FORMAT,
                "estimator_params": json.dumps(self.params),
                "n_rois": int(self.n_rois_),
                "seg_len": int(self.seg_len_),
            },
        )
        return ds

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> BrainMAE:
        """Read a fit written by :meth:`save` (netCDF), or a single encoder in a torch weights file.

        Parameters
        ----------
        path : str or path-like
            The file.
        device : str
            Where the network is placed.

        Returns
        -------
        BrainMAE
        """
        p = Path(path)
        if _is_torch_file(p):
            blob, meta = _load_blob(p, device)
            if meta.get("format") == FOLDS_FORMAT:
                raise InputError(
                    f"{p}: holds {len(meta['folds'])} per-fold BrainMAE encoders, not one; read it with load_fold_models"
                )
            return cls._from(meta, blob["state_dict"], device)
        return super().load(p, device=device, source=str(p))

    @classmethod
    @fill_doc
    def from_dataset(cls, ds: xr.Dataset, device: str = "cpu", source: str = "BrainMAE fit") -> BrainMAE:
        """Rebuild a fitted model from :meth:`to_dataset`.

        Parameters
        ----------
        %(fit_ds)s
        %(device)s
        %(source)s

        Returns
        -------
        BrainMAE
            The fitted model, on ``device``.
        """
        if ds.attrs.get("model") != cls.model_name or "estimator_params" not in ds.attrs:
            raise InputError(f"{source}: not a BrainMAE fit written by BrainMAE.to_dataset")
        meta = {
            "params": json.loads(ds.attrs["estimator_params"]),
            "n_rois": ds.attrs["n_rois"],
            "seg_len": ds.attrs["seg_len"],
        }
        model = cls(**meta["params"])
        model.n_rois_, model.seg_len_ = int(meta["n_rois"]), int(meta["seg_len"])
        model.net_ = BrainMAENet(model.n_rois_, model.seg_len_, model._net_config())
        model.net_.load_state_dict(variables_to_state(ds, model.net_.state_dict(), source))
        model.net_.to(device).eval()
        lin = getattr(model.net_, "lin_alpha", None)
        model.linear_alpha_ = None if lin is None else float(lin)
        return model


FORMAT = "brainpipe-brainmae/1"
FOLDS_FORMAT = "brainpipe-brainmae-folds/1"


def _save_blob(path, blob: dict) -> Path:
    p = Path(path)
    with atomic_output(p) as tmp:
        torch.save(blob, tmp)
    return p


def _is_torch_file(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _load_blob(p: Path, device: str) -> tuple[dict, dict]:
    try:
        blob = torch.load(p, map_location=device, weights_only=True)
        meta = json.loads(blob["meta"])
    except Exception as err:  # torch raises many types on a bad file
        raise InputError(
            f"{p}: not a brainpipe BrainMAE weights file ({type(err).__name__}); re-run the pretraining"
        ) from None
    return blob, meta


def save_fold_models(models: list[BrainMAE], path: str | os.PathLike) -> Path:
    """One encoder per outer cross-validation fold (``models[k]`` never saw fold ``k``) in one torch file: each
    encoder's weights (state dict of tensors) and hyperparameters (JSON), no pickle."""
    meta = {"format": FOLDS_FORMAT, "folds": [m._meta() for m in models]}
    blob = {"meta": json.dumps(meta), **{f"state_dict_{k}": m._state() for k, m in enumerate(models)}}
    return _save_blob(path, blob)


def load_fold_models(path: str | os.PathLike, device: str = "cpu") -> list[BrainMAE]:
    """The per-fold encoders written by :func:`save_fold_models` (index = the outer fold each one never saw)."""
    from brainpipe.models.brainmae.estimator import BrainMAE

    p = Path(path)
    if p.is_file() and not _is_torch_file(p):
        raise InputError(
            f"{p}: not a torch file of per-fold encoders (a single BrainMAE encoder is saved as netCDF); "
            "re-run pretrain_brainmae"
        )
    blob, meta = _load_blob(p, device)
    if meta.get("format") != FOLDS_FORMAT:
        raise InputError(
            f"{p}: a single BrainMAE encoder (format {meta.get('format')!r}), not per-fold encoders; "
            "re-run pretrain_brainmae (it now trains one encoder per fold)"
        )
    return [BrainMAE._from(m, blob[f"state_dict_{k}"], device) for k, m in enumerate(meta["folds"])]
