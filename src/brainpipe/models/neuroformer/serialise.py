"""Saving and loading a Neuroformer as a ``model_fit`` dataset without pickle (a mixin of
:class:`~brainpipe.models.neuroformer.Neuroformer`), and the vocabulary check on load."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.errors import InputError
from brainpipe.models.base import state_to_variables, variables_to_state
from brainpipe.models.neuroformer.tokenizer import N_SPECIAL, SpikeTokenizer

if TYPE_CHECKING:
    from brainpipe.models.neuroformer.estimator import Neuroformer

MODEL_KEYS = (
    "d_model",
    "n_heads",
    "n_layers",
    "n_past_layers",
    "dropout",
    "contrastive_dim",
    "readout",
    "modality_dropout",
    "past_positions",
    "past_attention",
)


class Serialisation:
    """``to_dataset``/``from_dataset`` of :class:`Neuroformer` (mixed into it)."""

    def to_dataset(self) -> xr.Dataset:
        """Return the weights and vocabulary as a ``model_fit`` dataset (no pickle): one variable ``w__<param>`` per tensor.

        Returns
        -------
        xarray.Dataset
            The weights, the units and the tokenizer settings; the hyperparameters in its attrs.
        """
        self._check_fitted()
        tok = self.tokenizer_
        data = state_to_variables(self.net_.state_dict())
        ds = xr.Dataset(data, coords={"unit": ("unit", tok.units_)})
        ds.attrs.update(
            {
                "model": "neuroformer",
                "role": "fit",
                **tok.to_attrs(),
                "modalities": _json({n: {"source": s, "variables": v} for n, s, v in tok.mod_layout_}),
                "target": _json(dict(tok.target) if tok.target is not None else None),
                "classes": _json([float(c) for c in getattr(tok, "classes_", [])]),
                "target_mean": float(getattr(self, "target_mean_", 0.0)),
                "target_std": float(getattr(self, "target_std_", 1.0)),
                "model_params": _json({k: getattr(self, k) for k in MODEL_KEYS}),
                "seed": int(self.seed),
            }
        )
        return ds

    @classmethod
    @fill_doc
    def from_dataset(
        cls, ds: xr.Dataset, counts: xr.Dataset | None = None, source: str = "checkpoint"
    ) -> Neuroformer:
        """Rebuild a model from :meth:`to_dataset`.

        Parameters
        ----------
        %(fit_ds)s
        counts : xarray.Dataset, optional
            Data the model will see: its vocabulary (units, dt resolution) must match the checkpoint's.
        source : str, default "checkpoint"
            What the checkpoint is called in error messages (e.g. its file name).

        Returns
        -------
        Neuroformer
            The fitted model.

        Raises
        ------
        brainpipe.errors.InputError
            Not a Neuroformer checkpoint, or a vocabulary that differs from the data's (naming both sizes).
        """
        import json

        if ds.attrs.get("model") != "neuroformer":
            raise InputError(f"{source}: not a neuroformer checkpoint (model = {ds.attrs.get('model')!r})")
        mp = json.loads(ds.attrs["model_params"])
        mods = json.loads(ds.attrs["modalities"])
        target = json.loads(ds.attrs["target"])
        tok = SpikeTokenizer(
            dt_s=float(ds.attrs["tok_dt_s"]),
            window_s=float(ds.attrs["tok_window_s"]),
            past_window_s=float(ds.attrs["tok_past_window_s"]),
            stride_s=float(ds.attrs["tok_stride_s"]),
            block_size=int(ds.attrs["tok_block_size"]),
            past_block_size=int(ds.attrs["tok_past_block_size"]),
            modalities=mods,
            target=target,
        )
        model = cls(tokenizer=tok, seed=int(ds.attrs.get("seed", 0)), **mp)
        units = np.asarray(ds["unit"].values).astype(str)
        if counts is not None:
            model.check_vocabulary(ds, counts, source)
            model.tokenizer_ = copy.deepcopy(tok).fit(counts, source)
        else:
            t = copy.deepcopy(tok)
            t.units_, t.bin_width_s_ = units, float(ds.attrs["tok_bin_width_s"])
            t.rebin_ = int(round(t.dt_s / t.bin_width_s_))
            t.window_bins_ = int(round(t.window_s / t.bin_width_s_))
            t.past_bins_ = int(round(t.past_window_s / t.bin_width_s_))
            t.stride_bins_ = int(round(t.stride_s / t.bin_width_s_))
            t.mod_layout_ = [(n, str(s["source"]), list(s["variables"])) for n, s in mods.items()]
            model.tokenizer_ = t
        classes = json.loads(ds.attrs.get("classes", "[]"))
        if classes:
            model.tokenizer_.classes_ = np.asarray(classes)
        model.target_mean_ = float(ds.attrs.get("target_mean", 0.0))
        model.target_std_ = float(ds.attrs.get("target_std", 1.0))
        model.net_ = model._build()
        state = variables_to_state(ds, model.net_.state_dict(), f"{source}: checkpoint")
        try:
            model.net_.load_state_dict(state)
        except RuntimeError as err:
            raise InputError(
                f"{source}: weights do not fit the model ({' '.join(str(err).split())[:300]})"
            ) from None
        model.net_.eval()
        return model

    @staticmethod
    def check_vocabulary(ds: xr.Dataset, counts: xr.Dataset, source: str = "checkpoint") -> None:
        """Check that the data's ID/dt vocabulary equals the checkpoint's (the reference's most reported error).

        Parameters
        ----------
        ds : xarray.Dataset
            A Neuroformer ``model_fit`` dataset.
        counts : xarray.Dataset
            The ``spike_counts`` dataset to use it on.
        source : str, default "checkpoint"
            What the checkpoint is called in error messages.

        Raises
        ------
        brainpipe.errors.InputError
            The vocabularies differ (naming both sizes).
        """
        units = np.asarray(ds["unit"].values).astype(str)
        data_units = np.asarray(counts["unit"].values).astype(str)
        n_ck, n_data = int(ds.attrs["vocab_id"]), data_units.size + N_SPECIAL
        if n_ck != n_data:
            raise InputError(
                f"{source}: vocabulary mismatch: the checkpoint's ID vocabulary has {n_ck} tokens ({units.size} units + "
                f"{N_SPECIAL} special) but the data give {n_data} ({data_units.size} units + {N_SPECIAL}); fine-tune on the "
                "units the model was pretrained on (same unit QC) or pretrain again on these data"
            )
        if not np.array_equal(units, data_units):
            diff = [u for u in data_units if u not in set(units)][:3]
            raise InputError(
                f"{source}: vocabulary mismatch: same size ({n_ck} ID tokens) but different units (e.g. {', '.join(diff) or 'order'}); "
                "fine-tune on the units the model was pretrained on"
            )
        bw = float(counts.attrs["bin_width_s"])
        if abs(bw - float(ds.attrs["tok_bin_width_s"])) > 1e-12:
            raise InputError(
                f"{source}: the checkpoint was trained on {ds.attrs['tok_bin_width_s']} s bins, the data have {bw} s bins; "
                "bin the spikes as for pretraining"
            )


def _json(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True)
