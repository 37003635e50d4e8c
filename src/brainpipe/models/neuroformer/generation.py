"""Autoregressive spike generation of a fitted Neuroformer (a mixin of
:class:`~brainpipe.models.neuroformer.Neuroformer`): key-value cached decoding, top-k and nucleus sampling."""

from __future__ import annotations

import numpy as np
import torch

from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer.network import filter_logits
from brainpipe.models.neuroformer.tokenizer import Windows


class Generation:
    """Sampling of current-window spikes (mixed into :class:`Neuroformer`; needs ``net_`` and ``tokenizer_``)."""

    @torch.no_grad()
    def generate(
        self,
        win: Windows,
        n_samples: int = 1,
        temperature: float = 1.0,
        seed: int = 0,
        batch_size: int = 512,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
    ) -> np.ndarray:
        """Sample current-window spikes autoregressively given each window's past and modalities.

        Sampling stops at EOS (or a full block); SOS/PAD are never sampled and dt tokens never go backwards in time.
        With ``use_cache`` each token costs one position (key-value cache, :meth:`NeuroformerNet.step`), else a
        full forward pass over the tokens so far; both give the same logits.

        Parameters
        ----------
        win : Windows
            Tokenised windows (:meth:`SpikeTokenizer.transform`); their past and modalities condition the samples.
        n_samples : int, default 1
            Samples per window.
        temperature : float, default 1.0
            Softmax temperature.
        seed : int, default 0
            Seed of the sampling.
        batch_size : int, default 512
            Windows per forward pass.
        top_k : int, optional
            Sample among the ``top_k`` most likely tokens only (ID and dt; None: all).
        top_p : float, optional
            Nucleus sampling: among the most likely tokens whose probability reaches ``top_p`` (None: all).
        use_cache : bool, default True
            Key-value cached decoding.

        Returns
        -------
        numpy.ndarray
            (n_samples, n_windows, n_units) counts of the sampled ID tokens.
        """
        if top_k is not None and int(top_k) < 1:
            raise ConfigError(f"neuroformer generate: top_k={top_k} must be >= 1 (or null: no top-k)")
        if top_p is not None and not 0 < float(top_p) <= 1:
            raise ConfigError(f"neuroformer generate: top_p={top_p} must be in (0, 1] (or null: no nucleus)")
        self.net_.eval()
        sp = self.tokenizer_.special()
        n_units = self.tokenizer_.vocab["n_units"]
        n_dtv = self.tokenizer_.window_bins_ // self.tokenizer_.rebin_  # dt values inside the current window
        dev = next(self.net_.parameters()).device
        gen = torch.Generator(device=dev).manual_seed(int(seed))
        B = self.tokenizer_.block_size
        out = np.zeros((n_samples, len(win), n_units), np.int64)
        for s in range(n_samples):
            for lo in range(0, len(win), batch_size):
                hi = min(lo + batch_size, len(win))
                past_id = torch.as_tensor(win.past_id[lo:hi], device=dev)
                past_dt = torch.as_tensor(win.past_dt[lo:hi], device=dev)
                mod = torch.as_tensor(win.modality[lo:hi], device=dev)
                nb = hi - lo
                ids = torch.full((nb, B - 1), sp["pad"], dtype=torch.long, device=dev)
                dts = torch.full((nb, B - 1), sp["pad_dt"], dtype=torch.long, device=dev)
                ids[:, 0], dts[:, 0] = sp["sos"], sp["sos_dt"]
                done = torch.zeros(nb, dtype=torch.bool, device=dev)
                last_dt = torch.zeros(nb, dtype=torch.long, device=dev)
                cache = self.net_.init_cache(past_id, past_dt, mod) if use_cache else None
                for pos in range(B - 2):
                    if cache is not None:
                        o = self.net_.step(ids[:, pos], dts[:, pos], cache)
                        li, ld = o["id_logits"].float(), o["dt_logits"][:, :n_dtv].float()
                    else:
                        o = self.net_(ids[:, : pos + 1], dts[:, : pos + 1], past_id, past_dt, mod)
                        li, ld = o["id_logits"][:, pos].float(), o["dt_logits"][:, pos, :n_dtv].float()
                    li = li / temperature
                    li[:, [sp["sos"], sp["pad"]]] = float("-inf")
                    li = filter_logits(li, top_k, top_p)
                    nid = torch.multinomial(torch.softmax(li, -1), 1, generator=gen)[:, 0]
                    ld = ld / temperature
                    ld = ld.masked_fill(
                        torch.arange(n_dtv, device=dev)[None] < last_dt[:, None], float("-inf")
                    )
                    ld = filter_logits(ld, top_k, top_p)
                    ndt = torch.multinomial(torch.softmax(ld, -1), 1, generator=gen)[:, 0]
                    eos = (nid == sp["eos"]) & ~done
                    ndt = torch.where(eos, torch.full_like(ndt, sp["eos_dt"]), ndt)
                    nid = torch.where(done, torch.full_like(nid, sp["pad"]), nid)
                    ndt = torch.where(done, torch.full_like(ndt, sp["pad_dt"]), ndt)
                    ids[:, pos + 1], dts[:, pos + 1] = nid, ndt
                    last_dt = torch.where(eos | done, last_dt, ndt)
                    done |= eos
                    if bool(done.all()):
                        break
                spikes = ids[:, 1:].cpu().numpy()
                for u in range(n_units):
                    out[s, lo:hi, u] = (spikes == u).sum(1)
        return out
