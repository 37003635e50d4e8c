"""The linear probe of a Neuroformer's behaviour head (a mixin of :class:`~brainpipe.models.neuroformer.Neuroformer`):
the head's features from the frozen network, its linear layer fitted as ridge or logistic regression with the
penalty chosen on the validation windows, and the behaviour loss the fine-tuning options are compared on."""

from __future__ import annotations

import numpy as np
import torch

from brainpipe.models.neuroformer.network import behaviour_loss
from brainpipe.models.neuroformer.tokenizer import Windows


class LinearProbe:
    """Head-only fitting on frozen features (mixed into :class:`Neuroformer`; needs ``net_`` and
    ``_forward_windows``)."""

    @torch.no_grad()
    def _head_inputs(self, win: Windows) -> np.ndarray:
        """(window, feature) what the behaviour head reads (after its LayerNorm), the network in eval mode."""
        self.net_.eval()
        head = self.net_.head_behaviour
        got = []
        h = head[0].register_forward_hook(lambda _m, _i, out: got.append(out.detach().float().cpu()))
        try:
            self._forward_windows(win)
        finally:
            h.remove()
        return torch.cat(got).numpy().astype(np.float64) if got else np.zeros((0, head[1].in_features))

    @torch.no_grad()
    def _behaviour_val_loss(self, win: Windows, kind: str, cw: torch.Tensor | None) -> float:
        """The behaviour loss (as the training loop validates it) over windows, the network in eval mode."""
        self.net_.eval()
        dev = next(self.net_.parameters()).device
        total, n = 0.0, 0
        tensors = win.tensors()
        for s in range(0, len(win), 256):
            b = [t[s : s + 256].to(dev) for t in tensors]
            total += float(behaviour_loss(self.net_, b, kind, cw)) * b[0].shape[0]
            n += b[0].shape[0]
        return total / max(n, 1)

    def _fit_probe(
        self, take, keep: np.ndarray, va_idx: np.ndarray, kind: str, cw: torch.Tensor | None
    ) -> dict[str, float]:
        """Fit the head's linear layer on frozen features: ridge (regression) or class-balanced logistic
        regression on standardised features of the labelled windows, the penalty with the lowest validation loss.
        ``take`` gives the windows (a :class:`~brainpipe.models.neuroformer.finetune.WindowSource` with its
        training target ``y`` set); their features are computed a chunk of windows at a time."""
        from sklearn.linear_model import LogisticRegression, Ridge

        X = np.concatenate([self._head_inputs(w) for w in take.chunks(np.concatenate([keep, va_idx]))])
        X_tr, X_va = X[: keep.size], X[keep.size :]
        mu, sd = X_tr.mean(0), X_tr.std(0) + 1e-6
        Z_tr, Z_va = (X_tr - mu) / sd, (X_va - mu) / sd
        y_tr, y_va = take.y[keep, 0], take.y[va_idx, 0]
        lin = self.net_.head_behaviour[1]
        n_out = lin.out_features
        best = (np.inf, None, None, None)
        for a in np.logspace(-2, 4, 7):
            if kind == "classification":
                classes = np.unique(y_tr.astype(int))
                W, b = np.zeros((n_out, Z_tr.shape[1])), np.full(n_out, -30.0)
                if classes.size < 2:
                    b[classes] = 0.0
                else:
                    m = LogisticRegression(C=1.0 / a, max_iter=500, class_weight="balanced")
                    m.fit(Z_tr, y_tr.astype(int))
                    if classes.size == 2:  # one logit: class 1 against class 0
                        W[classes[1]], b[classes[0]], b[classes[1]] = m.coef_[0], 0.0, m.intercept_[0]
                    else:
                        W[classes], b[classes] = m.coef_, m.intercept_
                logits = Z_va @ W.T + b
                logp = logits - logits.max(1, keepdims=True)
                logp -= np.log(np.exp(logp).sum(1, keepdims=True))
                yv = y_va.astype(int)
                w = cw.numpy()[yv] if cw is not None else np.ones(yv.size)
                loss = float(-(w * logp[np.arange(yv.size), yv]).sum() / max(w.sum(), 1e-12))
            else:
                m = Ridge(alpha=a).fit(Z_tr, y_tr)
                W, b = m.coef_[None, :], np.atleast_1d(m.intercept_)
                loss = float(np.mean((Z_va @ W[0] + b[0] - y_va) ** 2))
            if loss < best[0]:
                best = (loss, a, W, b)
        loss, a, W, b = best
        with torch.no_grad():  # fold the standardisation into the linear layer
            lin.weight.copy_(torch.as_tensor(W / sd[None, :], dtype=lin.weight.dtype))
            lin.bias.copy_(torch.as_tensor(b - (W * (mu / sd)[None, :]).sum(1), dtype=lin.bias.dtype))
        return {"val_loss": loss, "alpha": float(a)}
