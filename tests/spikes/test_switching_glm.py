"""Switching GLMs: exact HMM inference, EM behaviour, planted-truth recovery, (de)serialisation, stages, GPU."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import xarray as xr

from brainpipe.data import read
from brainpipe.errors import ConfigError, InputError
from brainpipe.evaluate.switching import balanced_accuracy, match_states, switching_metrics
from brainpipe.models import hmm
from brainpipe.models.switching_glm import SwitchingGLM
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate import simulate
from hmm_checks import assert_matches_reference, prefix_mask, random_hmm

TINY = {"n_neurons": 6, "n_states": 2, "n_sequences": 8, "n_test_sequences": 3, "sequence_length": 300}


# -- exact inference ------------------------------------------------------------------------------------------
def test_forward_backward_equals_enumeration(rng):
    S, T = 2, 6
    ll, log_pi, log_A = random_hmm(rng, 1, T, S)
    paths = np.array(list(itertools.product(range(S), repeat=T)))
    lp = np.array(
        [
            log_pi[p[0]] + ll[0, 0, p[0]] + sum(log_A[p[t - 1], p[t]] + ll[0, t, p[t]] for t in range(1, T))
            for p in paths
        ],
        dtype=float,
    )
    z = np.logaddexp.reduce(lp)
    w = np.exp(lp - z)
    gamma = np.stack([[w[paths[:, t] == s].sum() for s in range(S)] for t in range(T)])
    xi = np.zeros((S, S))
    for t in range(1, T):
        for i, j in itertools.product(range(S), repeat=2):
            xi[i, j] += w[(paths[:, t - 1] == i) & (paths[:, t] == j)].sum()
    log_norm, g, x = hmm.forward_backward(ll, log_pi, log_A)
    np.testing.assert_allclose(log_norm.numpy()[0], z, rtol=1e-12)
    np.testing.assert_allclose(g.numpy()[0], gamma, atol=1e-12)
    np.testing.assert_allclose(x.numpy(), xi, atol=1e-12)
    best = paths[np.argmax(lp)]
    np.testing.assert_array_equal(hmm.viterbi(ll, log_pi, log_A)[0], best)


@pytest.mark.parametrize("T", [1, 2, 7, 64, 301])
def test_batched_padded_matches_reference(rng, T):
    S = 3
    ll, log_pi, log_A = random_hmm(rng, 3, T, S)
    lengths = [T, max(1, T // 2), max(1, T - 3)]
    mask = prefix_mask(T, lengths)
    log_norm, gamma, xi = hmm.forward_backward(ll, log_pi, log_A, mask)
    paths = hmm.viterbi(ll, log_pi, log_A, mask)
    xi_ref = assert_matches_reference(ll, log_pi, log_A, lengths, log_norm, gamma, paths)
    for b, n in enumerate(lengths):
        assert np.all(paths[b, n:] == -1)
    np.testing.assert_allclose(xi.numpy(), xi_ref, atol=1e-9)
    np.testing.assert_allclose(
        hmm.log_marginal(ll, log_pi, log_A, mask).numpy(), log_norm.numpy(), rtol=1e-12
    )


@pytest.mark.parametrize("chunk", [1, 2, 5, 1000])
def test_chunk_size_does_not_change_messages(rng, chunk):
    ll, log_pi, log_A = random_hmm(rng, 2, 37, 3)
    mats = hmm._transition_mats(ll, log_A, torch.ones(2, 37, dtype=torch.bool))[:, 1:]
    v0 = log_pi[None] + ll[:, 0]
    ref = hmm._prefix_messages(v0, mats, hmm._log_matmul, chunk=None)
    np.testing.assert_allclose(
        hmm._prefix_messages(v0, mats, hmm._log_matmul, chunk=chunk).numpy(), ref.numpy(), rtol=1e-12
    )


def test_viterbi_known_answer():
    """The textbook example (Wikipedia, 'Viterbi algorithm'): Healthy/Fever, observations normal, cold, dizzy."""
    start = np.log([0.6, 0.4])
    trans = np.log([[0.7, 0.3], [0.4, 0.6]])
    emit = np.array([[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]])  # rows: Healthy, Fever; cols: normal, cold, dizzy
    obs = [0, 1, 2]
    ll = torch.tensor(np.log(emit[:, obs].T)[None])
    path = hmm.viterbi(ll, torch.tensor(start), torch.tensor(trans))[0]
    assert path.tolist() == [0, 0, 1]  # Healthy, Healthy, Fever (probability 0.01512)
    delta_last = np.log(0.01512)
    scores = [
        start[p[0]]
        + np.log(emit[p[0], 0])
        + sum(trans[p[t - 1], p[t]] + np.log(emit[p[t], obs[t]]) for t in (1, 2))
        for p in itertools.product(range(2), repeat=3)
    ]
    assert np.isclose(max(scores), delta_last)


def test_float32_matches_float64(rng):
    ll, log_pi, log_A = random_hmm(rng, 2, 500, 3)
    z64, g64, _ = hmm.forward_backward(ll, log_pi, log_A)
    z32, g32, _ = hmm.forward_backward(ll.float(), log_pi.float(), log_A.float())
    np.testing.assert_allclose(z32.numpy(), z64.numpy(), rtol=1e-5)
    np.testing.assert_allclose(g32.numpy(), g64.numpy(), atol=1e-4)


# -- the model on planted data --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_switch():
    sim = simulate("switching_glm_network", TINY, seed=2)
    return sim, bin_spikes(sim.data, 0.02)


@pytest.mark.parametrize(
    ("prior", "link"),
    [("none", "sigmoid"), ("gaussian", "sigmoid"), ("none", "softplus"), ("onehot", "softplus")],
)
def test_em_objective_rises_monotonically(tiny_switch, prior, link):
    _, counts = tiny_switch
    m = SwitchingGLM(n_states=2, prior=prior, link=link, n_iter=15, tol=0.0, device="cpu").fit(counts)
    obj = m.objective_
    assert obj.size == 16
    # exact EM for the free weights; the one-hot prior's Laplace-EM (responsibilities judged on the data's estimates)
    # may dip, by far less than it gains
    slack = 1e-4 if prior == "onehot" else 1e-6
    assert np.all(np.diff(obj) >= -slack * np.abs(obj[:-1])), np.diff(obj)
    assert obj[-1] > obj[0]


@pytest.fixture(scope="module")
def tiny_fits(tiny_switch):
    _, counts = tiny_switch
    fits = {}
    for name, kw in {"single": {"n_states": 1}, "none": {}, "onehot": {"prior": "onehot"}}.items():
        kw = {"n_states": 2, "link": "sigmoid", "device": "cpu", **kw}
        fits[name] = SwitchingGLM(**kw).fit(counts)
    return fits


def test_recovers_planted_truth(tiny_switch, tiny_fits):
    sim, counts = tiny_switch
    truth = sim.truth
    m = tiny_fits["none"]
    values = switching_metrics(
        m.to_dataset(counts), counts, truth, {"single": tiny_fits["single"].to_dataset(counts)}
    )
    assert values["state_accuracy"] >= 0.85
    assert values["state_accuracy"] >= values["oracle_state_accuracy"] - 0.05
    assert values["weight_corr"] >= 0.9
    assert values["bits_vs_oracle"] >= -0.05
    assert values["bits_vs_single"] > 0  # switching beats one state on switching data
    assert values["test_bits_per_spike"] > 0


def test_onehot_recovers_structure(tiny_switch, tiny_fits):
    sim, counts = tiny_switch
    m = tiny_fits["onehot"]
    assert set(np.unique(m.adjacency_)) <= {-1, 0, 1}
    values = switching_metrics(
        m.to_dataset(counts), counts, sim.truth, {"none": tiny_fits["none"].to_dataset(counts)}
    )
    assert values["adjacency_balanced_accuracy"] >= 0.9
    assert values["shared_mean_corr"] >= 0.9
    assert values["shared_adjacency_balanced_accuracy"] >= 0.6  # the planted categorical from 2 states' draws
    assert values["adjacency_ba_vs_none"] >= -0.02
    # the whole shared categorical against the planted one: closer than a uniform or a single state's guess
    single = switching_metrics(tiny_fits["single"].to_dataset(counts), counts, sim.truth)
    planted = np.asarray(sim.truth["prior_probs"].values)[~np.eye(6, dtype=bool)]
    uniform_tv = 0.5 * np.abs(planted - 1 / 3).sum(-1).mean()
    assert 0 <= values["shared_probs_tv"] < min(uniform_tv, single["shared_probs_tv"])
    assert values["shared_probs_tv_vs_none"] == pytest.approx(
        values["shared_probs_tv"]
        - switching_metrics(tiny_fits["none"].to_dataset(counts), counts, sim.truth)["shared_probs_tv"]
    )
    assert m.prior_probs_.shape == (6, 6, 3)
    np.testing.assert_allclose(m.prior_probs_.sum(-1), 1.0)
    # the shared categorical is learned (not its hyperprior mean, uniform by default) and sets the shared structure
    off = ~np.eye(6, dtype=bool)
    assert np.abs(m.prior_probs_[off] - 1 / 3).max() > 0.2
    np.testing.assert_array_equal(m.shared_adjacency_[off], m.prior_probs_[off].argmax(-1) - 1)
    # hard structure: a weight is non-zero exactly where the category is inh/exc (off the diagonal)
    off = ~np.eye(6, dtype=bool)
    assert np.all((m.weights_[:, off] != 0) == (m.adjacency_[:, off] != 0))


def test_round_trip_through_dataset(tiny_switch, tiny_fits, tmp_path):
    from brainpipe.data import make_provenance, write

    _, counts = tiny_switch
    for name, m in tiny_fits.items():
        ds = m.to_dataset(counts)
        write(ds, tmp_path / f"{name}.nc", "model_fit", make_provenance("test"))
        back = SwitchingGLM.from_dataset(read(tmp_path / f"{name}.nc", "model_fit"), device="cpu")
        np.testing.assert_allclose(back.weights_, m.weights_, rtol=1e-14, atol=1e-15)
        # the data term runs in float32: a 1e-16 change of a weight can flip a float32 rounding (1e-7 relative)
        assert np.isclose(back.log_likelihood(counts, "test"), m.log_likelihood(counts, "test"), rtol=1e-7)
        post, vit = back.decode(counts)
        np.testing.assert_allclose(post, ds["posterior"].values, atol=1e-6)
        np.testing.assert_array_equal(vit, ds["viterbi"].values)
        assert post.shape == (counts.sizes["time"], m.n_states) and np.allclose(post.sum(1), 1)


def test_match_states_and_balanced_accuracy():
    z = np.array([0, 0, 1, 1, 2, 2, 2])
    est = np.array([2, 2, 0, 0, 1, 1, 0])
    perm, acc = match_states(z, est, 3, 3)
    assert perm.tolist() == [2, 0, 1] and np.isclose(acc, 6 / 7)
    assert np.isclose(balanced_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])), 0.75)


# -- bad input ------------------------------------------------------------------------------------------------
def test_more_states_than_data_supports(tiny_switch):
    _, counts = tiny_switch
    short = counts.isel(time=slice(0, 40))
    short["split"][:] = 0
    with pytest.raises(InputError, match="training bins cannot support 5 states"):
        SwitchingGLM(n_states=5, device="cpu").fit(short)


def test_bad_hyperparameters(tiny_counts):
    """Checked in fit (the constructor only stores them), one line naming the parameter and the allowed values."""
    cases = [
        ({"prior": "laplace"}, r"prior must be one of none, gaussian, onehot \(got 'laplace'\)"),
        ({"link": "relu"}, r"link must be one of softplus, sigmoid, exp \(got 'relu'\)"),
        ({"data_dtype": "float16"}, r"data_dtype must be one of float32, float64 \(got 'float16'\)"),
        ({"m_step": "adam"}, r"m_step must be one of newton, lbfgs \(got 'adam'\)"),
        ({"hessian_rows": 0}, r"hessian_rows must be >= 1 \(got 0\)"),
        ({"onehot_prior_mean": (0.5, 0.5)}, r"onehot_prior_mean must be 3 positive probabilities"),
    ]
    for kw, msg in cases:
        model = SwitchingGLM(**kw)  # stored as given
        with pytest.raises(ConfigError, match="SwitchingGLM: " + msg):
            model.fit(tiny_counts)


# -- the fitting machinery: closed-form gradients, Newton M-step, precision ------------------------------------
def _fitting_setup(counts, link, data_dtype="float64", **kw):
    m = SwitchingGLM(n_states=2, link=link, device="cpu", data_dtype=data_dtype, **kw)
    m.cov_mean_, m.cov_std_ = np.zeros(0), np.ones(0)
    data = m.batch(counts, "train")
    rng = np.random.default_rng(0)
    N = data.counts.shape[-1]
    glm = {"W": rng.normal(0, 0.3, (N, N)), "b": rng.normal(-1.5, 0.3, N), "U": np.zeros((N, 0))}
    p = m._init_params(data, rng, glm)
    gamma = torch.as_tensor(rng.dirichlet([1.0, 1.0], size=data.counts.shape[:2]))
    return m, data, p, gamma


@pytest.mark.parametrize("link", ["sigmoid", "softplus", "exp"])
def test_closed_form_q_and_gradients_match_autograd(tiny_switch, link):
    """The M-step's value per (state, neuron) and its gradients, in closed form, against autograd of the plain
    formula sum_t g_t (y log r - r), r = max(f(eta), 1e-10), in float64."""
    _, counts = tiny_switch
    m, data, p, gamma = _fitting_setup(counts, link)
    rows = m._state_rows(data, gamma)
    value, dW, db, dU = m._q_and_grads(p["W"], p["b"], p["U"], rows)
    W, b = p["W"].clone().requires_grad_(True), p["b"].clone().requires_grad_(True)
    eta = b[None, None] + torch.einsum("btm,snm->btsn", data.history, W)
    rate = {"sigmoid": torch.sigmoid, "softplus": torch.nn.functional.softplus, "exp": torch.exp}[link](eta)
    rate = rate.clamp_min(1e-10)
    term = data.counts[:, :, None, :] * torch.log(rate) - rate
    ref = (gamma[..., None] * term).sum((0, 1))  # (S, N)
    ref.sum().backward()
    np.testing.assert_allclose(value.numpy(), ref.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(dW.numpy(), W.grad.numpy(), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(db.numpy(), b.grad.numpy(), rtol=1e-8, atol=1e-8)
    # the float32 data term agrees to float32 precision (sums accumulated in float64)
    m32, data32, p32, gamma32 = _fitting_setup(counts, link, "float32")
    v32 = m32._q_and_grads(p32["W"], p32["b"], p32["U"], m32._state_rows(data32, gamma32))[0]
    assert v32.dtype == torch.float64
    np.testing.assert_allclose(v32.numpy(), value.numpy(), rtol=1e-5)


@pytest.mark.parametrize(("link", "prior"), [("sigmoid", "none"), ("softplus", "gaussian"), ("exp", "none")])
def test_newton_m_step_reaches_the_lbfgs_optimum(tiny_switch, link, prior):
    """Run to convergence, the Newton M-step (subsampled Fisher information, damped) and L-BFGS find the same
    maximum of Q + log prior; Newton needs far fewer passes over the data."""
    _, counts = tiny_switch
    out = {}
    for kind in ("newton", "lbfgs"):
        m, data, p, gamma = _fitting_setup(
            counts,
            link,
            prior=prior,
            m_step=kind,
            newton_iter=60,
            m_step_iter=500,
            hessian_rows=300,
            tol=1e-12,
        )
        if prior == "gaussian":
            p["W_bar"] = p["W"].mean(0) * (1 - torch.eye(p["W"].shape[-1], dtype=p["W"].dtype))
        calls = {"n": 0}
        orig = m._q_and_grads

        def counted(*a, orig=orig, calls=calls):
            calls["n"] += 1
            return orig(*a)

        m._q_and_grads = counted
        m._m_step(p, ["b", "U", "W"], data, gamma, hard=True)
        del m._q_and_grads
        q = m._q_and_grads(p["W"], p["b"], p["U"], m._state_rows(data, gamma))[0].sum() + m._log_prior(
            p, p["W"]
        )
        out[kind] = (float(q), p["W"].numpy(), calls["n"])
    assert out["newton"][0] >= out["lbfgs"][0] - 1e-6 * abs(out["lbfgs"][0])
    np.testing.assert_allclose(out["newton"][1], out["lbfgs"][1], atol=2e-3)
    assert out["newton"][2] < out["lbfgs"][2]


def test_subsampled_fisher_information_approximates_the_full_one(tiny_switch):
    _, counts = tiny_switch
    m, data, p, gamma = _fitting_setup(counts, "sigmoid", hessian_rows=10**6)  # every bin
    rows = m._state_rows(data, gamma)
    theta = torch.cat([p["W"], p["b"][..., None], p["U"]], -1)
    D = theta.shape[-1]
    full = m._fisher_blocks(theta, m._fisher_design(rows, D))
    m.hessian_rows = 400  # of 1,920 training bins per state
    sub = m._fisher_blocks(theta, m._fisher_design(rows, D))
    assert not torch.equal(sub, full)
    rel = torch.linalg.matrix_norm(sub - full) / torch.linalg.matrix_norm(full)
    assert float(rel.max()) < 0.25, rel
    # for the canonical (exp) link the Fisher information is the Hessian of -Q itself: check one block by autograd
    m, data, p, gamma = _fitting_setup(counts, "exp", hessian_rows=10**6)
    assert data.covariates.shape[-1] == 0  # theta = [W_sn, b_sn]
    rows = m._state_rows(data, gamma)
    theta = torch.cat([p["W"], p["b"][..., None], p["U"]], -1)
    info = m._fisher_blocks(theta, m._fisher_design(rows, D))
    H = data.history.reshape(-1, D - 1)
    y = data.counts.reshape(-1, D - 1)[:, 2]
    g = gamma.reshape(-1, 2)[:, 1]

    def neg_q(th):  # state 1, neuron 2
        eta = H @ th[:-1] + th[-1]
        return -(g * (y * eta - torch.exp(eta))).sum()

    hess = torch.autograd.functional.hessian(neg_q, theta[1, 2].clone())
    np.testing.assert_allclose(info[1, 2].numpy(), hess.numpy(), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(("rare", "spread", "log_semiring"), [(1e-12, 3000.0, False), (1e-300, 50.0, True)])
def test_forward_backward_survives_extreme_likelihoods(rng, monkeypatch, rare, spread, log_semiring):
    """Log-likelihood gaps of thousands of nats between states (likelihood factors underflow to 0) and rare
    transitions: the scaled linear-domain recursions (row-wise scales) stay exact; with transition or initial
    probabilities of 1e-300 the call goes to the log semiring (in the linear domain it would lose mass)."""
    B, T, S = 2, 400, 3
    ll = torch.tensor(rng.normal(size=(B, T, S)) * spread)
    log_pi = torch.log(torch.tensor([rare, 0.5, 0.5], dtype=torch.float64))
    A = np.full((S, S), rare)
    np.fill_diagonal(A, 1.0)
    A[0, 1] = A[1, 2] = A[2, 0] = 1e-3
    log_A = torch.tensor(np.log(A / A.sum(1, keepdims=True)))
    calls = []

    def counted(f):
        return lambda *a: calls.append(1) or f(*a)

    for name in ("_forward_backward_log", "_log_marginal_log"):
        monkeypatch.setattr(hmm, name, counted(getattr(hmm, name)))
    log_norm, gamma, xi = hmm.forward_backward(ll, log_pi, log_A)
    assert bool(calls) == log_semiring
    for b in range(B):
        z, g, x = hmm.forward_backward_reference(ll[b].numpy(), log_pi.numpy(), log_A.numpy())
        np.testing.assert_allclose(log_norm[b].item(), z, rtol=1e-12)
        np.testing.assert_allclose(gamma[b].numpy(), g, atol=1e-7)
    np.testing.assert_allclose(hmm.log_marginal(ll, log_pi, log_A).numpy(), log_norm.numpy(), rtol=1e-12)
    assert len(calls) == 2 * log_semiring
    assert torch.isfinite(xi).all() and np.isclose(float(xi.sum()), B * (T - 1))


def test_float32_parameters_fit_as_on_a_gpu(tiny_switch, monkeypatch):
    """On CUDA the parameters and sums are float32 too: the same code path, run here on CPU."""
    sim, counts = tiny_switch
    monkeypatch.setattr(SwitchingGLM, "_dtype", lambda self, device: torch.float32)
    m = SwitchingGLM(n_states=2, link="sigmoid", device="cpu").fit(counts)
    assert m.params_["W"].dtype == torch.float32
    assert np.all(np.isfinite(m.objective_)) and m.objective_[-1] > m.objective_[0]
    values = switching_metrics(m.to_dataset(counts), counts, sim.truth)
    assert values["state_accuracy"] >= 0.85 and values["weight_corr"] >= 0.9


@pytest.mark.parametrize("prior", ["none", "gaussian"])
def test_float32_data_term_fits_like_float64(tiny_switch, prior):
    _, counts = tiny_switch
    fits = {
        dt: SwitchingGLM(n_states=2, prior=prior, link="sigmoid", device="cpu", data_dtype=dt).fit(counts)
        for dt in ("float32", "float64")
    }
    a, b = fits["float32"], fits["float64"]
    assert a.weights_.dtype == np.float64 and a.objective_.dtype == np.float64
    np.testing.assert_allclose(a.objective_[-1], b.objective_[-1], rtol=1e-6)
    np.testing.assert_allclose(a.log_likelihood(counts, "test"), b.log_likelihood(counts, "test"), rtol=1e-5)
    np.testing.assert_allclose(a.weights_, b.weights_, atol=0.02)


def test_units_must_match(tiny_switch, tiny_fits):
    _, counts = tiny_switch
    other = counts.assign_coords(unit=[f"x{i}" for i in range(counts.sizes["unit"])])
    with pytest.raises(InputError, match="units differ"):
        tiny_fits["none"].log_likelihood(other)


def test_not_counts():
    with pytest.raises(InputError, match="needs a spike_counts dataset"):
        SwitchingGLM(device="cpu").fit(xr.Dataset({"x": ("time", np.zeros(3))}))


# -- stages ---------------------------------------------------------------------------------------------------
def test_fit_and_evaluate_stages(tmp_path):
    from brainpipe.stages import bin_spikes as bin_stage
    from brainpipe.stages import evaluate_switching_glm, fit_switching_glm
    from brainpipe.stages import simulate as sim_stage

    d = tmp_path / "results" / "spikes" / "sw"
    sim_stage.run(
        {},
        {"data": d / "spikes.nc", "truth": d / "truth.nc"},
        {"generator": "switching_glm_network", "seed": 1, "params": {**TINY, "n_sequences": 4}},
        None,
    )
    bin_stage.run({"spikes": d / "spikes.nc"}, {"counts": d / "counts.nc"}, {"bin_width_s": 0.02}, None)
    fits = {}
    for v, kw in {"single": {"n_states": 1}, "none": {}}.items():
        fits[v] = d / "switching_glm" / v / "fit.nc"
        fit_switching_glm.run(
            {"counts": d / "counts.nc"},
            {"fit": fits[v]},
            {"n_states": 2, "link": "sigmoid", "n_iter": 20, "device": "cpu", **kw},
            tmp_path / f"{v}.log",
        )
    out = d / "switching_glm" / "none" / "metrics.nc"
    evaluate_switching_glm.run(
        {
            "fit": fits["none"],
            "counts": d / "counts.nc",
            "truth": d / "truth.nc",
            "references": [fits["single"]],
        },
        {"metrics": out},
        {"bars": {"state_accuracy": 0.8, "bits_vs_single": 0.0}, "dataset": "sw", "variant": "none"},
        None,
    )
    m = read(out, "metrics")
    assert m.attrs["model"] == "switching_glm/none" and m.attrs["dataset"] == "sw"
    names = set(m["metric"].values.tolist())
    assert {
        "test_bits_per_spike",
        "state_accuracy",
        "weight_corr",
        "adjacency_balanced_accuracy",
        "bits_vs_single",
        "state_dwell_median_s",
    } <= names
    fit = read(fits["none"], "model_fit")
    assert fit.attrs["model"] == "switching_glm" and fit.sizes["state"] == 2
    assert fit["posterior"].shape == (read(d / "counts.nc").sizes["time"], 2)
    assert "EM:" in (tmp_path / "none.log").read_text()


def test_fit_stage_rejects_unknown_parameter(tmp_path, tiny_switch):
    from brainpipe.data import make_provenance, write
    from brainpipe.stages import fit_switching_glm

    _, counts = tiny_switch
    write(counts, tmp_path / "c.nc", "spike_counts", make_provenance("test"))
    out = tmp_path / "fit.nc"
    with pytest.raises(ConfigError, match="unknown parameter\\(s\\) n_state "):
        fit_switching_glm.run({"counts": tmp_path / "c.nc"}, {"fit": out}, {"n_state": 2}, None)
    assert not out.exists()


# -- GPU ------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_inference_and_fit(tiny_switch, rng):
    ll, log_pi, log_A = (t.cuda() for t in random_hmm(rng, 2, 200, 3))
    log_norm, gamma, xi = hmm.forward_backward(ll, log_pi, log_A)
    assert log_norm.device.type == "cuda" and gamma.device.type == "cuda" and xi.device.type == "cuda"
    ref, _, _ = hmm.forward_backward(ll.cpu(), log_pi.cpu(), log_A.cpu())
    np.testing.assert_allclose(log_norm.cpu().numpy(), ref.numpy(), rtol=1e-10)
    _, counts = tiny_switch
    m_gpu = SwitchingGLM(n_states=2, link="sigmoid", n_iter=10, device="cuda").fit(counts)
    m_cpu = SwitchingGLM(n_states=2, link="sigmoid", n_iter=10, device="cpu").fit(counts)
    assert m_gpu.params_["W"].device.type == "cuda"
    assert isinstance(m_gpu.weights_, np.ndarray)
    assert np.isclose(m_gpu.log_likelihood(counts), m_cpu.log_likelihood(counts), rtol=1e-3)


def test_config_schema_lists_every_hyperparameter():
    """The study config can set exactly the model's hyperparameters (no drift between schema and class)."""
    import inspect
    from pathlib import Path

    import yaml

    schema = yaml.safe_load((Path(__file__).parents[2] / "workflow/schemas/config.schema.yaml").read_text())
    params = set(inspect.signature(SwitchingGLM.__init__).parameters) - {"self"}
    # plus `select`: the validation grid, which the fit stage resolves into candidate hyperparameters
    assert set(schema["$defs"]["switching_model"]["properties"]) == params | {"select"}
    assert set(schema["$defs"]["switching_override"]["properties"]) == params | {"select"}
    defaults = {
        k: v["default"] for k, v in schema["$defs"]["switching_model"]["properties"].items() if k != "select"
    }
    sig = inspect.signature(SwitchingGLM.__init__).parameters
    for k, v in defaults.items():
        d = sig[k].default
        assert (list(d) if isinstance(d, tuple) else d) == v, k


# -- bad input of the spike branch's newer paths: one line each, nothing written ---------------------------
def test_unit_qc_rejects_a_threshold_no_unit_reaches(tiny_switch, tmp_path):
    from brainpipe.data import make_provenance, write
    from brainpipe.preprocess import unit_qc
    from brainpipe.stages import bin_spikes as bin_stage

    sim, _ = tiny_switch
    with pytest.raises(ConfigError, match=r"unit QC: no unit reaches min_rate_hz=1000.0 \(highest rate"):
        unit_qc(sim.data, min_rate_hz=1000.0)
    write(sim.data, tmp_path / "s.nc", "spike_times", make_provenance("test"))
    out = tmp_path / "c.nc"
    with pytest.raises(ConfigError, match="no unit reaches") as err:
        bin_stage.run({"spikes": tmp_path / "s.nc"}, {"counts": out}, {"qc": {"min_rate_hz": 1000.0}}, None)
    assert "\n" not in str(err.value) and not out.exists()


def test_overlapping_trials_cannot_be_binned(tiny_switch):
    sim, _ = tiny_switch
    bad = sim.data.copy()
    bad["trial_stop"] = bad["trial_stop"] + 1.0  # each trial now runs into the next
    with pytest.raises(ConfigError, match="trials overlap or are not sorted"):
        bin_spikes(bad, 0.02)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"references": ["nope"]}, "key 'spikes.switching_glm.references': 'nope' is not a variant"),
        (
            {"datasets": {"ghost": {}}},
            "key 'spikes.switching_glm.datasets.ghost': no spike dataset named 'ghost'",
        ),
        (
            {"datasets": {"sim": {"variants": ["nope"]}}},
            "key 'spikes.switching_glm.datasets.sim.variants': 'nope' is not a variant",
        ),
    ],
)
def test_switching_config_cross_checks(change, message):
    from pathlib import Path

    from brainpipe.config import validate_config

    cfg = {
        "spikes": {
            "datasets": {"sim": {"simulate": {"generator": "switching_glm_network"}}},
            "switching_glm": change,
        }
    }
    schema = Path(__file__).parents[2] / "workflow/schemas/config.schema.yaml"
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, schema, source="study.yaml")
    assert (
        str(err.value).startswith("study.yaml: ") and message in str(err.value) and "\n" not in str(err.value)
    )


def test_reader_keys_do_not_go_with_a_simulator():
    from pathlib import Path

    from brainpipe.config import validate_config

    cfg = {
        "spikes": {"datasets": {"sim": {"simulate": {"generator": "switching_glm_network"}, "format": "nwb"}}}
    }
    schema = Path(__file__).parents[2] / "workflow/schemas/config.schema.yaml"
    with pytest.raises(ConfigError, match="'format' and 'options' go with 'path', not 'simulate'"):
        validate_config(cfg, schema, source="study.yaml")


# -- preemption: SIGTERM -> checkpoint -> Preempted; a rerun resumes and ends with the same fit --------------------
@pytest.mark.parametrize(
    ("kw", "stop_at"),
    [
        ({"prior": "none", "n_restarts": 2}, 13),  # second restart, mid-EM
        ({"prior": "onehot", "n_iter": 8}, 5),  # one-hot prior, mid-EM (q, categorical and slab saved too)
    ],
)
def test_sigterm_resume_gives_the_uninterrupted_fit(tiny_switch, tmp_path, monkeypatch, kw, stop_at):
    import os
    import signal

    from brainpipe.training import Preempted

    _, counts = tiny_switch
    base = {"n_states": 2, "link": "sigmoid", "n_iter": 10, "tol": 0.0, "device": "cpu", **kw}
    ref = SwitchingGLM(**base).fit(counts)
    calls = {"n": 0}
    original = SwitchingGLM._m_step

    def m_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)

    ckpt = tmp_path / "fit.pt"
    with monkeypatch.context() as mp:
        mp.setattr(SwitchingGLM, "_m_step", m_step)
        with pytest.raises(Preempted, match="rerun the same command to resume"):
            SwitchingGLM(**base).fit(counts, checkpoint=ckpt, fingerprint={"x": 1}, checkpoint_every_s=1e9)
    assert ckpt.exists()
    calls["n"] = 0
    resumed = SwitchingGLM(**base).fit(counts, checkpoint=ckpt, fingerprint={"x": 1})
    np.testing.assert_array_equal(resumed.weights_, ref.weights_)
    np.testing.assert_array_equal(resumed.objective_, ref.objective_)
    np.testing.assert_array_equal(resumed.log_A_, ref.log_A_)
    other = SwitchingGLM(**base | {"seed": 1}).fit(counts, checkpoint=ckpt, fingerprint={"x": 1})
    assert not np.array_equal(other.weights_, ref.weights_)  # another run's checkpoint is not resumed


# -- hyperparameters chosen on the validation split ----------------------------------------------------------------
def test_relevant_grid_drops_other_priors_keys_and_keeps_the_baseline_single_state():
    from brainpipe.models.switching_glm.select import relevant_grid

    grid = {"n_states": [2, 3], "gaussian_sigma": [0.1, 1.0], "onehot_spike_sd": [0.05], "l2": [1e-3, 1.0]}
    assert relevant_grid({"prior": "gaussian", "n_states": 3}, grid) == {
        "n_states": [2, 3],
        "gaussian_sigma": [0.1, 1.0],
        "l2": [1e-3, 1.0],
    }
    assert relevant_grid({"prior": "none", "n_states": 1}, grid) == {"l2": [1e-3, 1.0]}


def test_select_fits_on_train_and_chooses_on_validation_only(monkeypatch):
    from brainpipe.models.switching_glm.select import fit_select
    from brainpipe.stages.fit_switching_glm import build_model

    sim = simulate("switching_glm_network", dict(TINY, n_validation_sequences=2), seed=2)
    counts = bin_spikes(sim.data, 0.02)
    assert set(np.unique(counts["split"].values)) == {0, 1, 2}
    scored = []
    original = SwitchingGLM.score

    def score(self, ds, split="test"):
        scored.append(split)
        return original(self, ds, split)

    monkeypatch.setattr(SwitchingGLM, "score", score)
    params = {"n_states": 2, "prior": "gaussian", "n_iter": 5, "device": "cpu"}
    model, table = fit_select(
        params, {"gaussian_sigma": [0.01, 1.0], "onehot_spike_sd": [0.1]}, counts, build_model
    )
    assert scored == ["validation", "validation"]  # the test split is never read while choosing
    assert (
        table.sizes["candidate"] == 2 and "selection_onehot_spike_sd" not in table
    )  # other prior's key dropped
    best = int(np.argmax(table["selection_score"].values))
    assert table.attrs["selected"] == best
    assert model.gaussian_sigma == table["selection_gaussian_sigma"].values[best]
    assert np.isclose(original(model, counts, "validation"), table["selection_score"].values[best])


def test_select_without_validation_bins_is_one_line(tiny_switch):
    from brainpipe.models.switching_glm.select import fit_select
    from brainpipe.stages.fit_switching_glm import build_model

    _, counts = tiny_switch  # train and test sequences only
    with pytest.raises(InputError, match="'select' needs a validation split") as err:
        fit_select({"n_states": 2, "device": "cpu"}, {"l2": [0.1, 1.0]}, counts, build_model)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="select.l2 must be a non-empty list"):
        fit_select({"n_states": 2, "device": "cpu"}, {"l2": []}, counts, build_model)


def test_laplace_weights_undo_the_priors_shrinkage(tiny_switch):
    """The structure read-out's per-weight estimates: a fit without prior is its own estimate (with positive,
    finite variances); a tight Gaussian prior's shrunk weights get back towards what the data say."""
    _, counts = tiny_switch
    out = {}
    for prior, kw in (("none", {}), ("gaussian", {"gaussian_sigma": 0.02})):
        m = SwitchingGLM(n_states=2, prior=prior, link="sigmoid", n_iter=15, device="cpu", **kw).fit(counts)
        data = m.batch(counts, "train")
        _, _, (_, gamma, _) = m._objective(m.params_, data, True)
        W_hat, var = (t.numpy() for t in m._laplace_weights(m.params_, data, gamma))
        assert np.all(np.isfinite(var)) and np.all(var > 0)
        off = ~np.eye(W_hat.shape[-1], dtype=bool)
        out[prior] = (m.weights_[:, off], W_hat[:, off], np.sqrt(var[:, off]))
    W, W_hat, sd = out["none"]
    assert np.median(np.abs(W_hat - W) / sd) < 0.1  # already the data's estimate
    W, W_hat, _ = out["gaussian"]
    spread = lambda w: np.abs(w - w.mean(0)).mean()  # noqa: E731
    assert spread(W_hat) > 3 * spread(W)  # the states' estimates no longer pulled together


def test_shared_categorical_breaks_ties_towards_the_common_class():
    """The shared structure's read-out: a pair whose 3 states disagree (one per class) goes to the class most
    frequent over the fit (empirical-Bayes Dirichlet mean), whichever that is; a 2-of-3 majority still wins."""
    N = 4
    for common in (0, 1, 2):
        q = torch.zeros(3, N, N, 3, dtype=torch.float64)
        q[..., common] = 1.0
        q[:, 0, 1] = torch.eye(3, dtype=torch.float64)  # pair (0, 1): one state per class
        q[:, 2, 3] = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
        q[:, range(N), range(N)] = 0.0
        probs = SwitchingGLM()._shared_categorical(q)
        assert int(probs[0, 1].argmax()) == common
        assert int(probs[2, 3].argmax()) == 2
        torch.testing.assert_close(probs.sum(-1), torch.ones(N, N, dtype=torch.float64))
