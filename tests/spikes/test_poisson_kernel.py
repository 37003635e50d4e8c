"""The switching GLM's fused Poisson data term (brainpipe.models._poisson_kernel_src, built with the HMM kernel):
equal to a float64 reference for every link over the whole range of linear predictors, independent of the number
of threads, used by the M-step and the E-step on the CPU in float32 only, and agreeing with the torch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_switching_glm import _fitting_setup

from brainpipe.models import _hmm_kernel
from brainpipe.models.switching_glm import SwitchingGLM
from brainpipe.models.switching_glm import mstep as mstep_module
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate import simulate

LINKS = {"softplus": 0, "sigmoid": 1, "exp": 2}
pytestmark = pytest.mark.skipif(_hmm_kernel.load() is None, reason="the compiled kernel is not built here")


def _reference(eta: np.ndarray, y: np.ndarray, link: str):
    """term = y log r - r and its derivative in float64, r = max(f(eta), 1e-10), with the torch path's
    conventions (:meth:`EmissionMSteps._poisson_terms`): the sigmoid's derivative (y - r)(1 - r) at the floored
    rate."""
    x = eta.astype(np.float64)
    if link == "sigmoid":
        f = 1 / (1 + np.exp(-x))
        r = np.maximum(f, 1e-10)
        d = (y - r) * (1 - r)
    elif link == "softplus":
        f = np.logaddexp(x, 0.0)
        r = np.maximum(f, 1e-10)
        d = (y / r - 1) / (1 + np.exp(-x))
    else:
        f = np.exp(x)
        r = np.maximum(f, 1e-10)
        d = y - f
    return y * np.log(r) - r, d


def _block(rng, rows: int, n: int, spread: float = 3.0):
    eta = rng.normal(-1.0, spread, (rows, n))
    eta[0, : min(n, 6)] = [-120.0, -30.0, -1e-6, 0.0, 30.0, 120.0][: min(n, 6)]  # both tails and zero
    y = rng.poisson(1.0, (rows, n)).astype(np.float64)
    y[1, :] = 7.0  # large counts
    return eta, y


@pytest.mark.parametrize("link", sorted(LINKS))
def test_value_and_weighted_derivative_match_float64(rng, link):
    rows, n = 1037, 13  # not a multiple of the kernel's chunk of rows
    eta, y = _block(rng, rows, n, spread=8.0 if link != "exp" else 3.0)
    if link == "exp":
        eta[0, 4:6] = [20.0, 30.0]  # exp(120) overflows float32; the link's own domain is what the fits reach
    g = rng.uniform(0, 1, rows)
    term, d = _reference(eta, y, link)
    t32 = [torch.as_tensor(a, dtype=torch.float32) for a in (eta, y, g)]
    out = torch.empty(rows, n)
    value = _hmm_kernel.poisson_value_grad(*t32, LINKS[link], out)
    assert value.dtype == torch.float64 and value.shape == (n,)
    # the reference from the float32-rounded inputs (what the kernel sees)
    term, d = _reference(t32[0].double().numpy(), y, link)
    np.testing.assert_allclose(value.numpy(), (g[:, None] * term).sum(0), rtol=2e-6, atol=1e-4)
    gd = g[:, None] * d
    np.testing.assert_allclose(out.numpy(), gd, rtol=2e-5, atol=1e-6 * np.abs(gd).max())
    # the value alone (an empty derivative buffer) is the same number
    value_only = _hmm_kernel.poisson_value_grad(*t32, LINKS[link], torch.empty(0, n))
    assert torch.equal(value_only, value)


@pytest.mark.parametrize("link", sorted(LINKS))
def test_row_sums_match_float64(rng, link):
    rows, n, S = 701, 11, 3
    eta, _ = _block(rng, rows, S * n, spread=3.0)
    if link == "exp":
        eta[0, 4:6] = [20.0, 30.0]
    y = rng.poisson(1.0, (rows, n)).astype(np.float64)
    e32 = torch.as_tensor(eta, dtype=torch.float32)
    out = _hmm_kernel.poisson_row_sums(e32, torch.as_tensor(y, dtype=torch.float32), S, LINKS[link])
    term, _ = _reference(e32.double().numpy().reshape(rows, S, n), y[:, None, :], link)
    np.testing.assert_allclose(out.numpy(), term.sum(-1), rtol=2e-6, atol=1e-4)


def test_results_do_not_depend_on_the_number_of_threads(rng):
    eta, y = _block(rng, 5000, 20)
    g = rng.uniform(0, 1, 5000)
    t32 = [torch.as_tensor(a, dtype=torch.float32) for a in (eta, y, g)]
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            d = torch.empty(5000, 20)
            results.append((_hmm_kernel.poisson_value_grad(*t32, 1, d), d))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_bad_shapes_are_refused(rng):
    eta = torch.zeros(4, 3)
    with pytest.raises(RuntimeError, match="y: like eta"):
        _hmm_kernel.poisson_value_grad(eta, torch.zeros(4, 2), torch.zeros(4), 1, torch.empty(0, 3))
    with pytest.raises(RuntimeError, match="d: like eta, or empty"):
        _hmm_kernel.poisson_value_grad(eta, torch.zeros(4, 3), torch.zeros(4), 1, torch.empty(2, 3))
    with pytest.raises(RuntimeError, match="link"):
        _hmm_kernel.poisson_value_grad(eta, torch.zeros(4, 3), torch.zeros(4), 5, torch.empty(0, 3))
    with pytest.raises(RuntimeError, match="float32"):
        _hmm_kernel.poisson_value_grad(eta.double(), torch.zeros(4, 3), torch.zeros(4), 1, torch.empty(0, 3))


@pytest.fixture(scope="module")
def small_switch():
    sim = simulate(
        "switching_glm_network",
        {"n_neurons": 6, "n_states": 2, "n_sequences": 3, "sequence_length": 400, "n_test_sequences": 1},
        seed=4,
    )
    return bin_spikes(sim.data, float(sim.truth.attrs["bin_width_s"]))


@pytest.mark.parametrize("link", sorted(LINKS))
def test_m_step_and_e_step_use_the_kernel_and_agree_with_torch(small_switch, link, monkeypatch):
    """On the CPU in float32 the data term goes through the kernel (calls counted); with the kernel switched off
    the torch operations give the same values, gradients and emission terms to float32 rounding."""
    m, data, p, gamma = _fitting_setup(small_switch, link, "float32")
    calls = []
    for name in ("poisson_value_grad", "poisson_row_sums"):
        f = getattr(_hmm_kernel, name)
        monkeypatch.setattr(_hmm_kernel, name, lambda *a, f=f, name=name: calls.append(name) or f(*a))
    rows = m._state_rows(data, gamma)
    assert all(r[3] is None for r in rows)  # no weighted design: the kernel weights the derivative
    fused = m._q_and_grads(p["W"], p["b"], p["U"], rows)
    ll = m._log_lik(p, p["W"], data)
    assert {"poisson_value_grad", "poisson_row_sums"} <= set(calls)
    monkeypatch.setattr(mstep_module.EmissionMSteps, "_fused_link", lambda self, Z: None)
    calls.clear()
    plain = m._q_and_grads(p["W"], p["b"], p["U"], m._state_rows(data, gamma))
    ll_plain = m._log_lik(p, p["W"], data)
    assert not calls
    for a, b in zip(fused, plain, strict=True):
        if b.numel() == 0:  # no covariates
            continue
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5 * float(b.abs().max()))
    np.testing.assert_allclose(ll.numpy(), ll_plain.numpy(), rtol=1e-6)


def test_kernel_is_not_used_in_float64_or_when_switched_off(small_switch, monkeypatch):
    m = SwitchingGLM(n_states=2, device="cpu", data_dtype="float64")
    data = m.batch(small_switch, "train")
    Y, Z = data.valid_design()
    assert m._fused_link(Z) is None
    m32 = SwitchingGLM(n_states=2, device="cpu", data_dtype="float32")
    Z32 = m32.batch(small_switch, "train").valid_design()[1]
    assert m32._fused_link(Z32) == LINKS[m32.link]
    monkeypatch.setenv(_hmm_kernel.ENV, "torch")
    assert m32._fused_link(Z32) is None
