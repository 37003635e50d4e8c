"""Dynamic connectome: masked non-negative CP-HALS on planted tensors, the affinity tensor (in memory and chunked
zarr), and the whole method against the simulator's planted communities with the issue's bars."""

from __future__ import annotations

import numpy as np
import pytest
import tensorly as tl
import torch
from tensorly.cp_tensor import CPTensor, cp_normalize
from tensorly.metrics import congruence_coefficient

from brainpipe.data import make_provenance, read
from brainpipe.data.affinity_tensor import write_tensor_zarr
from brainpipe.errors import ConfigError, InputError
from brainpipe.evaluate.connectome import connectome_metrics, merge_truths
from brainpipe.evaluate.connectome_baselines import (
    BASELINES,
    baseline_communities,
    match_communities,
    score_communities,
)
from brainpipe.models import NotFittedError
from brainpipe.models.connectome import DynamicConnectome
from brainpipe.models.ncp import _hungarian_fms, factor_match_score, masked_ncp_hals
from brainpipe.preprocess.affinity import AnimalTraces, build_tensor
from brainpipe.preprocess.calcium import preprocess_calcium
from brainpipe.simulate import simulate


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small tensors: one thread, as the fit_connectome rule runs (torch's spin-waits cost minutes on a busy
    2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _planted_cp(rng, shape=(40, 30, 6), rank=3, sparsity=0.5):
    factors = [rng.random((n, rank)) * (rng.random((n, rank)) > sparsity) for n in shape]
    X = np.einsum("ir,jr,kr->ijk", *factors)
    return factors, X


def test_ncp_hals_recovers_a_planted_nonnegative_cp():
    rng = np.random.default_rng(0)
    factors, X = _planted_cp(rng)
    res = masked_ncp_hals(torch.tensor(X), 3, n_iter_max=500, tol=1e-10, seed=1)
    assert res.errors[-1] < 1e-3
    assert factor_match_score(factors, [f.numpy() for f in res.factors])[0] > 0.99
    # HALS never increases the error (up to rounding in the Gram-identity error near 0)
    assert all(e2 <= e1 + 1e-6 for e1, e2 in zip(res.errors, res.errors[1:], strict=False))
    assert res.to_tensor().dtype == torch.float64


def test_masked_fit_ignores_the_missing_entries():
    rng = np.random.default_rng(1)
    factors, X = _planted_cp(rng, sparsity=0.0)  # dense factors: every missing entry is identifiable
    mask = rng.random((40, 1, 6)) > 0.25  # whole fibres missing, as pairs an animal lacks
    corrupted = X.copy()
    corrupted[~np.broadcast_to(mask, X.shape)] = 50.0  # garbage where missing
    res = masked_ncp_hals(torch.tensor(corrupted), 3, torch.tensor(mask), n_iter_max=800, tol=1e-12, seed=2)
    fit = res.to_tensor().numpy()
    assert np.abs(fit - X).max() / X.max() < 0.02  # the missing entries are predicted, not fitted to garbage
    plain = masked_ncp_hals(torch.tensor(corrupted), 3, n_iter_max=300, seed=2).to_tensor().numpy()
    assert np.abs(plain - X).max() / X.max() > 0.5


def test_float32_input_stays_float32_on_its_device():
    rng = np.random.default_rng(2)
    _, X = _planted_cp(rng)
    res = masked_ncp_hals(torch.tensor(X, dtype=torch.float32), 3, n_iter_max=50, seed=0)
    assert all(f.dtype == torch.float32 and f.device.type == "cpu" for f in res.factors)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_output_on_cuda():
    rng = np.random.default_rng(3)
    factors, X = _planted_cp(rng)
    Xc = torch.tensor(X, dtype=torch.float32, device="cuda")
    mask = torch.ones((40, 1, 6), dtype=torch.bool, device="cuda")
    mask[:5, 0, 0] = False
    res = masked_ncp_hals(Xc, 3, mask, n_iter_max=500, tol=1e-9, seed=1)
    assert all(f.device.type == "cuda" for f in res.factors) and res.weights.device.type == "cuda"
    assert factor_match_score(factors, [f.cpu().numpy() for f in res.factors])[0] > 0.98


# ---- tensorly: CP algebra and the factor match score ---------------------------------------------------------
def test_cp_tensor_reconstructs_the_same_tensor_as_our_factors():
    rng = np.random.default_rng(4)
    _, X = _planted_cp(rng)
    mask = torch.tensor(rng.random((40, 1, 6)) > 0.2)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):  # ours sums in the factors' dtype
        res = masked_ncp_hals(torch.tensor(X, dtype=dtype), 3, mask, n_iter_max=100, seed=1)
        cp = res.to_cp_tensor()
        assert isinstance(cp, CPTensor) and cp.rank == 3 and cp.shape == X.shape
        assert cp.weights.dtype == np.float64 and all(isinstance(f, np.ndarray) for f in cp.factors)
        ours = res.to_tensor().double().numpy()
        np.testing.assert_allclose(tl.cp_to_tensor(cp), ours, rtol=tol, atol=tol * np.abs(ours).max())
        # our normalisation is tensorly's (unit columns, norms in the weights), components sorted by weight
        weights, factors = cp_normalize(cp)
        np.testing.assert_allclose(weights, cp.weights, rtol=1e-6)
        for f, g in zip(factors, cp.factors, strict=True):
            np.testing.assert_allclose(f, g, rtol=1e-6, atol=1e-12)
        assert np.all(np.diff(cp.weights) <= 0)
        cp.factors[0][:] = 0.0  # a copy: the solver's tensors are untouched
        assert float(res.factors[0].abs().sum()) > 0


def test_factor_match_score_is_tensorlys_congruence_coefficient():
    """Where tensorly defines it (same rank, no zero column, no weights) the score is tensorly's, and the
    Hungarian computation used elsewhere (the previous implementation) gives the same numbers bit for bit."""
    rng = np.random.default_rng(5)
    cases = []
    for _ in range(20):  # random factors, permuted and rescaled copies with noise, float32 and float64
        a = [rng.random((n, 4)) for n in (30, 20, 5)]
        order = rng.permutation(4)
        b = [(f[:, order] * rng.uniform(0.5, 2, 4) + 0.3 * rng.random(f.shape)).astype(np.float32) for f in a]
        cases.append((a, b))
    factors, X = _planted_cp(np.random.default_rng(6))
    fits = [masked_ncp_hals(torch.tensor(X), 3, n_iter_max=30, seed=k).factors for k in range(3)]
    cases += [
        (factors, [f.numpy() for f in fits[0]]),
        ([f.numpy() for f in fits[1]], [f.numpy() for f in fits[2]]),
    ]
    for a, b in cases:
        score, perm = factor_match_score(a, b)
        ref, ref_perm = congruence_coefficient(
            [np.asarray(f, float) for f in a], [np.asarray(f, float) for f in b]
        )
        old, old_perm = _hungarian_fms(a, b, None, None, False, ())
        assert score == float(ref) == old
        assert perm.tolist() == [int(k) for k in ref_perm] == old_perm.tolist()
        # leaving a mode out: tensorly on the other modes
        s1, _ = factor_match_score(a, b, skip_modes=(2,))
        assert s1 == float(
            congruence_coefficient(
                [np.asarray(f, float) for f in a[:2]], [np.asarray(f, float) for f in b[:2]]
            )[0]
        )
        assert s1 == _hungarian_fms(a, b, None, None, False, (2,))[0]


def test_factor_match_score_where_tensorly_has_none():
    """Different ranks and zero columns: tensorly refuses them; the score matches what is there, the rest is 0."""
    rng = np.random.default_rng(7)
    a = [rng.random((n, 3)) for n in (12, 8, 4)]
    with pytest.raises(ValueError, match="same number of columns"):
        congruence_coefficient(a, [f[:, :2] for f in a])
    score, perm = factor_match_score(a, [f[:, [2, 0]] for f in a])
    assert score == pytest.approx(2 / 3) and perm.tolist() == [1, -1, 0]
    dead = [f.copy() for f in a]
    dead[0][:, 1] = 0.0  # a component HALS switched off
    with pytest.raises(ValueError, match="nonzero"):
        congruence_coefficient(a, dead)
    assert factor_match_score(a, dead)[0] == pytest.approx(2 / 3)
    w = np.array([1.0, 2.0, 4.0])
    assert factor_match_score(a, a, w, w / 2, consider_weights=True)[0] == pytest.approx(0.5)


def _animals(n_animals=3, seed=0, **params):
    base = {"n_neurons": 30, "n_frames": 3000, "n_animals": n_animals}
    base.update(params)
    sims = [simulate("calcium_communities", {**base, "animal": a}, seed=seed) for a in range(n_animals)]
    procs = [preprocess_calcium(s.data, window_s=60) for s in sims]
    animals = [
        AnimalTraces(f"a{k}", p["dff"].values, [str(c) for c in p["cell"].values], 10.0)
        for k, p in enumerate(procs)
    ]
    return sims, animals


@pytest.fixture(scope="module")
def study():
    sims, animals = _animals()
    return sims, animals, build_tensor(animals, window_s=5.0, stride_s=2.5)


def test_tensor_has_the_missing_pairs_masked(study):
    sims, animals, tensor = study
    n = tensor.sizes["neuron"]
    assert tensor.sizes["pair"] == n * (n - 1) // 2 and tensor.sizes["animal"] == 3
    mask = tensor["mask"].values.astype(bool)
    assert 0.5 < mask.mean() < 1.0  # each animal lacks some neurons
    assert (tensor["affinity"].values[~mask[:, None, :].repeat(tensor.sizes["window"], 1)] == 0).all()
    present = sims[0].truth["present"].values
    neurons = list(tensor["neuron"].values)
    i, j = tensor["pair_i"].values, tensor["pair_j"].values
    expect = present[:, [int(x[1:]) for x in neurons]]
    np.testing.assert_array_equal(mask, (expect[:, i] & expect[:, j]).T.astype(bool))


def test_chunked_zarr_tensor_equals_the_in_memory_one(study, tmp_path):
    _, animals, tensor = study
    path = tmp_path / "tensor.zarr"
    # a memory budget that forces several window chunks
    write_tensor_zarr(path, animals, make_provenance("test", {}), window_s=5.0, stride_s=2.5, memory_mb=0.5)
    z = read(path, "affinity_tensor")
    assert z["affinity"].encoding["chunks"][1] < tensor.sizes["window"]
    np.testing.assert_allclose(z["affinity"].values, tensor["affinity"].values, rtol=1e-6)
    np.testing.assert_array_equal(z["time"].values, tensor["time"].values)


def test_window_longer_than_recording_is_one_line(study, tmp_path):
    _, animals, _ = study
    with pytest.raises(InputError) as err:
        write_tensor_zarr(tmp_path / "t.zarr", animals, make_provenance("test", {}), window_s=400.0)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(
        "a0: affinity window 400.0 s (4000 frames) is longer than the recording (3000 frames"
    )
    assert "set calcium.connectome.affinity.window_s below 300 s" in msg
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_connectome_meets_the_bars_on_planted_communities(study):
    """The bars: stability picks the true rank; community recovery and epoch detection at least the best baseline's
    (static Louvain, windowed Louvain, NMF on the same tensor); the absolute values are reported too."""
    sims, _, tensor = study
    model = DynamicConnectome(ranks=[2, 3, 4], restarts=4, device="cpu", seed=0).fit(tensor)
    fit = model.to_dataset(tensor)
    m = connectome_metrics(fit, tensor, merge_truths([s.truth for s in sims]))
    assert m["selected_rank_is_true"] == 1.0 and m["rank_is_stable"] == 1.0, m
    assert m["community_jaccard_mean_vs_best_baseline"] >= 0.0, m
    assert m["epoch_peak_fraction_vs_best_baseline"] >= 0.0, m
    for b in BASELINES:  # every baseline scored on the same planted communities
        assert 0.0 <= m[f"{b}_community_jaccard_mean"] <= 1.0, m
    assert m["stability_at_true_rank"] == pytest.approx(model.stability_[3])
    assert m["factor_match_score"] >= 0.90 and m["epoch_peak_fraction"] == 1.0, m
    assert model.stability_[4] < 0.9  # one component too many is unstable


def test_no_stable_rank_is_said_not_hidden(study, caplog):
    tensor = study[2].isel(window=slice(0, 40))  # small and fast
    with caplog.at_level("WARNING", logger="brainpipe.models.connectome"):
        model = DynamicConnectome(
            ranks=[3, 2],
            restarts=2,
            n_iter_max=10,
            stability_threshold=1.0,
            stability_of="factors",
            device="cpu",
        ).fit(tensor)
    assert not model.rank_is_stable_ and model.rank_ == 2
    assert "no rank reached the stability threshold" in caplog.text
    fit = model.to_dataset(tensor)
    assert fit.attrs["rank_is_stable"] == 0 and "unstable" in fit.attrs["rank_selection"]
    assert connectome_metrics(fit, tensor)["rank_is_stable"] == 0.0
    assert DynamicConnectome.from_dataset(fit).rank_is_stable_ is False
    stable = DynamicConnectome(ranks=[2], restarts=2, n_iter_max=10, stability_threshold=0.0, device="cpu")
    assert stable.fit(tensor).to_dataset().attrs["rank_is_stable"] == 1


def test_almost_all_zero_affinity_warns_and_is_recorded(study, caplog):
    tensor = study[2].isel(window=slice(0, 40))
    t = tensor.copy(deep=True)
    a = t["affinity"].values
    keep = np.random.default_rng(0).random(a.shape) < 0.02
    t["affinity"].values[:] = np.where(keep, a + 0.1, 0.0)
    with caplog.at_level("WARNING", logger="brainpipe.models.connectome"):
        model = DynamicConnectome(ranks=[2], restarts=2, n_iter_max=10, device="cpu").fit(t)
    assert "of the observed affinities are 0" in caplog.text
    fit = model.to_dataset()
    assert fit.attrs["affinity_zero_warning"] == 1 and fit.attrs["affinity_zero_fraction"] > 0.95
    assert (
        DynamicConnectome(ranks=[2], restarts=2, n_iter_max=20, device="cpu").fit(tensor).zero_fraction_
        < 0.95
    )


def test_score_communities_matches_one_found_community_per_planted_one():
    planted = np.zeros((10, 2), dtype=bool)
    planted[0:5, 0] = planted[3:8, 1] = True  # neurons 3, 4 in both
    tc = np.arange(6) * 10.0 + 5.0
    epochs = [[(0.0, 30.0)], [(30.0, 60.0)]]
    time = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0]], dtype=float)
    exact = score_communities(planted.T.copy(), time, planted, tc, epochs)
    assert exact == {"community_jaccard_min": 1.0, "community_jaccard_mean": 1.0, "epoch_peak_fraction": 1.0}
    part = np.zeros((2, 10), dtype=bool)  # a partition must give the shared neurons to one side
    part[0, 0:5] = part[1, 5:8] = True
    s = score_communities(part, time[::-1], planted, tc, epochs)
    assert s["community_jaccard_min"] == pytest.approx(3 / 5) and s["epoch_peak_fraction"] == 0.0
    one = score_communities(part[:1], time[:1], planted, tc, epochs)  # one found community: the other gets 0
    assert one["community_jaccard_min"] == 0.0 and one["community_jaccard_mean"] == pytest.approx(0.5)


def test_fitted_model_is_a_tensorly_cp_tensor(study):
    _, _, tensor = study
    model = DynamicConnectome(ranks=[2, 3], restarts=2, n_iter_max=50, device="cpu", seed=0).fit(tensor)
    cp = model.cp_tensor_
    assert isinstance(cp, CPTensor) and cp.rank == model.rank_
    assert cp.shape == (tensor.sizes["pair"], tensor.sizes["window"], tensor.sizes["animal"])
    w = model.weights_.double().numpy()
    A, B, C = (f.double().numpy() for f in model.factors_)
    ours = np.einsum("r,ir,jr,kr->ijk", w, A, B, C)
    np.testing.assert_allclose(tl.cp_to_tensor(cp), ours, rtol=1e-12, atol=1e-12 * ours.max())
    np.testing.assert_array_equal(model.reconstruct(), tl.cp_to_tensor(cp))
    back = DynamicConnectome.from_dataset(model.to_dataset())
    np.testing.assert_allclose(back.reconstruct(), model.reconstruct(), rtol=1e-6, atol=1e-7 * ours.max())
    with pytest.raises(NotFittedError):
        DynamicConnectome().cp_tensor_  # noqa: B018


def test_shuffled_time_destroys_the_structure():
    """A control that can fail: with each neuron's trace circularly shifted at random, there are no communities."""
    sims, animals = _animals(n_animals=2, seed=1, n_neurons=24, n_frames=2000)
    rng = np.random.default_rng(0)
    for a in animals:
        a.dff = np.stack([np.roll(a.dff[:, k], rng.integers(200, 1800)) for k in range(a.dff.shape[1])], 1)
    tensor = build_tensor(animals, window_s=5.0, stride_s=2.5)
    model = DynamicConnectome(ranks=[3], restarts=2, device="cpu").fit(tensor)
    m = connectome_metrics(model.to_dataset(tensor), tensor, merge_truths([s.truth for s in sims]))
    assert m["factor_match_score"] < 0.5 and m["community_jaccard_min"] < 0.5, m


def test_animal_specific_overlapping_community_needs_the_tensor():
    """Animals differ: community 2 is co-active in animal 2 only and shares 3 neurons with community 1 (and 1 with
    0), neurons are missing per animal. The NTF at the planted rank finds it, with its animal factor on animal 2;
    Louvain on the time-averaged affinity (a partition, diluted over animals) cannot. (Rank selection by stability
    over ranks 2-5 picks rank 2 on most seeds here and then misses it: bench/ntf_baselines.py.)"""
    sims, animals = _animals(seed=0, overlap=3, specific_communities=1)
    truth = merge_truths([s.truth for s in sims])
    assert truth["community_present"].values[:, 2].tolist() == [0, 0, 1]
    tensor = build_tensor(animals, window_s=5.0, stride_s=2.5)
    fit = DynamicConnectome(ranks=[3], restarts=2, device="cpu", seed=0).fit(tensor).to_dataset(tensor)
    planted = truth["membership"].sel(neuron=[str(n) for n in fit["neuron"].values]).values.astype(bool)
    ntf_jac, match = match_communities(fit["in_community"].values.astype(bool), planted)
    static, _ = baseline_communities(tensor, "static_louvain")
    static_jac, _ = match_communities(static, planted)
    assert ntf_jac[2] >= 0.85 and static_jac[2] <= 0.7, (ntf_jac, static_jac)
    animal = fit["animal_factor"].values[:, match[2]]
    assert animal[2] > 3 * max(animal[0], animal[1]), animal


def test_report_says_whether_the_ntf_beats_its_best_baseline_and_flags_unstable_ranks():
    import xarray as xr

    from brainpipe.evaluate.connectome import connectome_metrics_dataset
    from brainpipe.report.calcium import verdict_html

    values = {
        "community_jaccard_mean": 0.9,
        "static_louvain_community_jaccard_mean": 0.6,
        "windowed_louvain_community_jaccard_mean": 0.5,
        "nmf_community_jaccard_mean": 0.95,
        "community_jaccard_mean_vs_best_baseline": -0.05,
        "epoch_peak_fraction_vs_best_baseline": 0.0,
    }
    m = connectome_metrics_dataset(values, {"community_jaccard_mean_vs_best_baseline": 0.0}, "s")
    fit = xr.Dataset(attrs={"rank_is_stable": 0, "selected_rank": 2, "stability_threshold": 0.95})
    html = verdict_html(m, fit)
    assert "loses to the best baseline (nmf)" in html and "(-0.050)" in html
    assert "No candidate rank reached the stability threshold" in html
    fit.attrs.update(rank_is_stable=1, affinity_zero_warning=1, affinity_zero_fraction=0.98)
    html = verdict_html(m, fit)
    assert "98.0 % of the observed affinities are 0" in html and "No candidate rank" not in html
    values["community_jaccard_mean_vs_best_baseline"] = 0.1
    assert "beats the best baseline" in verdict_html(connectome_metrics_dataset(values, None, "s"), fit)
    # a rank chosen on held-out fibres that is not stable: said as such, not as "no rank reached"
    fit.attrs.update(
        rank_is_stable=0, rank_selection="smallest rank with held-out error within 0.002 of the lowest"
    )
    html = verdict_html(m, fit)
    assert "chosen on held-out (pair, animal) fibres (2)" in html and "No candidate rank" not in html


def test_per_animal_time_modes_follow_each_animals_own_epochs():
    """Freely behaving animals: each animal's epoch boundaries move by up to 40 % of an epoch. Shared pair factors
    with a time course per animal fit better than one shared time mode, and each animal's time course of a
    community peaks inside that animal's own epoch; the fit round-trips through its dataset."""
    sims, animals = _animals(seed=0, epoch_jitter=0.4)
    tensor = build_tensor(animals, window_s=5.0, stride_s=2.5)
    truth = merge_truths([s.truth for s in sims])
    lo, hi = truth["animal_epoch_start_s"].values, truth["animal_epoch_stop_s"].values
    assert np.ptp(lo[:, 1:], axis=0).max() > 10.0  # the animals' epochs really differ (4 windows and more)
    shared = DynamicConnectome(ranks=[3], restarts=2, device="cpu").fit(tensor)
    per = DynamicConnectome(ranks=[3], restarts=2, device="cpu", time_mode="per_animal").fit(tensor)
    assert per.score(tensor) > shared.score(tensor) + 0.03
    fit = per.to_dataset(tensor)
    assert (
        fit["animal_time_factor"].shape == (3, tensor.sizes["window"], 3)
        and fit.attrs["time_mode"] == "per_animal"
    )
    planted = truth["membership"].sel(neuron=[str(n) for n in fit["neuron"].values]).values.astype(bool)
    jac, match = match_communities(fit["in_community"].values.astype(bool), planted)
    assert jac.min() >= 0.85, jac
    tc = tensor["time"].values
    for c, k in enumerate(match):
        for a in range(3):
            t_peak = tc[int(np.argmax(fit["animal_time_factor"].values[a, :, k]))]
            assert lo[a, c] <= t_peak < hi[a, c], (a, c, t_peak, lo[a, c], hi[a, c])
    back = DynamicConnectome.from_dataset(fit)
    np.testing.assert_allclose(back.reconstruct(), per.reconstruct(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="time_mode"):
        DynamicConnectome(time_mode="free").fit(tensor)


def test_behaviour_relation_finds_the_factor_that_follows_behaviour():
    from brainpipe.evaluate.connectome import behaviour_relation

    rng = np.random.default_rng(0)
    t = np.arange(0, 300, 0.1)
    running = ((t // 30) % 2).astype(float)  # 0/1, 30 s bouts
    speed = np.sin(t / 20) + 0.1 * rng.standard_normal(t.size)
    starts = np.arange(0, 295, 2.5)
    mid = starts + 2.5
    tf = np.stack(
        [((mid // 30) % 2) + 0.2 * rng.random(mid.size), np.sin(mid / 20) + 1.5, rng.random(mid.size)], 1
    )
    rel = behaviour_relation(tf, starts, 5.0, t, {"running": running, "speed": speed})
    assert rel["running"][0] > 0.95 and abs(rel["running"][2] - 0.5) < 0.2
    assert rel["speed"][1] > 0.9 and abs(rel["speed"][2]) < 0.3
    const = behaviour_relation(tf, starts, 5.0, t, {"still": np.zeros_like(t)})
    assert np.isnan(const["still"]).all()
    with pytest.raises(ValueError, match="behaviour 'speed': 3 samples"):
        behaviour_relation(tf, starts, 5.0, t, {"speed": speed[:3]})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"overlap": 8}, "need 0 <= overlap < community_size"),
        ({"n_neurons": 24, "community_size": 8, "overlap": -1}, "need 0 <= overlap < community_size"),
        ({"specific_communities": 4}, "need 0 <= specific_communities <= n_communities"),
        ({"epoch_jitter": 0.5}, r"epoch_jitter must be in \[0, 0.5\)"),
    ],
)
def test_bad_animal_differences_are_one_line(params, message):
    from brainpipe.errors import ConfigError as Err

    with pytest.raises(Err, match=f"^simulator 'calcium_communities': {message}$"):
        simulate("calcium_communities", {"n_frames": 300, **params}, seed=0)


def test_animals_differ_as_asked():
    sims = [
        simulate(
            "calcium_communities",
            {
                "n_neurons": 30,
                "n_frames": 600,
                "animal": a,
                "overlap": 2,
                "specific_communities": 1,
                "epoch_jitter": 0.3,
            },
            seed=3,
        )
        for a in range(3)
    ]
    t = sims[0].truth
    mem = t["membership"].values
    assert (mem.sum(1) == 2).sum() == 4  # 2 neurons shared by communities 0-1 and 2 by 1-2
    assert t["community_present"].values.tolist() == [[1, 1, 0], [1, 1, 0], [1, 1, 1]]
    lo = t["animal_epoch_start_s"].values
    assert np.ptp(lo[:, 1]) > 0 and (lo[:, 0] == 0).all()
    for a, s in enumerate(sims):  # each truth has every animal's epochs, and its own as epoch_start_s
        np.testing.assert_array_equal(s.truth["epoch_start_s"].values, lo[a])
    # community 2's members fire together only in animal 2
    for a, s in enumerate(sims):
        cells = [str(c) for c in s.data["cell"].values]
        members = [
            n
            for n in t["neuron"].values[mem[:, 2] == 1]
            if n in cells and mem[list(t["neuron"].values).index(n)].sum() == 1
        ]
        sp = s.truth["spikes"].sel(cell=members).values > 0
        sp = sp | np.roll(sp, 1, axis=0)  # a member joins up to 1 frame late
        together = (sp.sum(1) >= len(members) // 2 + 1).sum()
        assert (together > 3) == (a == 2), (a, together)


def test_heldout_rank_selection_scores_hidden_entries_and_is_recorded(study, caplog):
    """rank_selection heldout: every rank's error on hidden entries is recorded, an under-fitted rank (2 of 3
    planted communities) predicts them clearly worse, the rule (smallest rank within heldout_tol of the lowest) is
    applied, and the selected rank's stability is still reported."""
    tensor = study[2]
    with caplog.at_level("WARNING", logger="brainpipe.models.connectome"):
        model = DynamicConnectome(
            ranks=[2, 3, 4], restarts=2, device="cpu", seed=0, rank_selection="heldout"
        ).fit(tensor)
    ho = model.heldout_error_
    assert sorted(ho) == [2, 3, 4] and ho[2] > 1.05 * ho[3]
    low = min(ho.values())
    assert model.rank_ == min(r for r in ho if ho[r] <= (1 + model.heldout_tol) * low)
    assert model.rank_is_stable_ == (model.stability_[model.rank_] >= model.stability_threshold)
    fit = model.to_dataset(tensor)
    assert "held-out error" in fit.attrs["rank_selection"]
    np.testing.assert_allclose(fit["rank_heldout_error"].values, [ho[2], ho[3], ho[4]])
    assert DynamicConnectome.from_dataset(fit).heldout_error_ == pytest.approx(ho)
    with pytest.raises(ConfigError, match="heldout_fraction"):
        DynamicConnectome(rank_selection="heldout", heldout_fraction=1.5).fit(tensor)


def test_masked_nmf_leaves_missing_entries_out_of_the_loss():
    """The masked NMF baseline: a planted rank-2 non-negative matrix with a quarter of its entries replaced by
    large garbage and masked is recovered (the garbage is ignored); unmasked, the same updates fit the garbage."""
    from brainpipe.evaluate.connectome_baselines import masked_nmf

    rng = np.random.default_rng(0)
    W0, H0 = rng.uniform(0, 1, (30, 2)), rng.uniform(0, 1, (2, 40))
    X = W0 @ H0
    mask = rng.uniform(size=X.shape) > 0.25
    Xg = np.where(mask, X, 10.0)
    start_w, start_h = rng.uniform(0.1, 1, (30, 2)), rng.uniform(0.1, 1, (2, 40))
    W, H = masked_nmf(Xg, mask, start_w, start_h, n_iter_max=3000, tol=1e-10)
    assert np.linalg.norm(W @ H - X) / np.linalg.norm(X) < 0.02  # the hidden entries are predicted too
    W, H = masked_nmf(Xg, np.ones_like(mask), start_w, start_h, n_iter_max=300)
    assert np.linalg.norm(W @ H - X) / np.linalg.norm(X) > 0.5


def test_heldout_blocks_hide_runs_of_windows_or_whole_fibres(study):
    """heldout_block_windows: the hidden entries are whole (pair, animal) fibres (0) or aligned runs of n windows
    (the last run shorter), about ``fraction`` of them; the fit records the pattern and every rank's error."""
    from brainpipe.models.connectome import heldout_blocks

    fib = heldout_blocks(50, 23, 3, 0.3, 0, seed=1).numpy()
    assert (fib == fib[:, :1, :]).all() and 0.15 < fib[:, 0, :].mean() < 0.45
    blk = heldout_blocks(50, 23, 3, 0.3, 5, seed=1).numpy()
    runs = blk.reshape(50, -1, 3)[:, :20, :].reshape(50, 4, 5, 3)
    assert (runs == runs[:, :, :1, :]).all() and (blk[:, 20:, :] == blk[:, 20:21, :]).all()
    assert not (blk == blk[:, :1, :]).all() and 0.2 < blk.mean() < 0.4
    tensor = study[2].isel(window=slice(0, 40))
    model = DynamicConnectome(
        ranks=[2, 3],
        restarts=1,
        n_iter_max=30,
        device="cpu",
        rank_selection="heldout",
        heldout_block_windows=8,
    ).fit(tensor)
    assert sorted(model.heldout_error_) == [2, 3]
    assert "runs of 8 windows" in model.to_dataset(tensor).attrs["rank_selection"]
    with pytest.raises(ConfigError, match="heldout_block_windows"):
        DynamicConnectome(rank_selection="heldout", heldout_block_windows=-1).fit(tensor)


def test_pair_support_leaves_pairs_missing_where_a_component_lives_out_of_its_community():
    """pair_support: the share of a component's animal energy in the animals that have the pair; with animals
    that differ (community 2 in animal 2 only, neurons missing per animal), the entries of the animal-specific
    component at pairs animal 2 lacks have support ~0 and its community holds no neuron animal 2 lacks."""
    from brainpipe.models.connectome import pair_support

    mask = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 0], [0, 0, 0]])
    c = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(pair_support(mask, c), [[1, 1], [2 / 3, 1], [2 / 3, 0], [0, 0]])
    sims, animals = _animals(seed=0, overlap=3, specific_communities=1, epoch_jitter=0.2)
    tensor = build_tensor(animals, window_s=5.0, stride_s=2.5)
    model = DynamicConnectome(ranks=[3], restarts=2, device="cpu", seed=0).fit(tensor)
    fit = model.to_dataset(tensor)
    r = int(
        np.argmax(fit["animal_factor"].values[2] / fit["animal_factor"].values.sum(0))
    )  # animal 2's component
    lacks = ~tensor["mask"].values[:, 2].astype(bool)
    assert (fit["pair_support"].values[lacks, r] < 0.05).all() and (
        fit["pair_support"].values[~lacks, r] > 0.9
    ).all()
    in_a2 = set(np.asarray(animals[2].cells))
    members = [str(n) for n, k in zip(fit["neuron"].values, fit["in_community"].values[r], strict=True) if k]
    assert members and set(members) <= in_a2, (members, sorted(set(fit["neuron"].values.astype(str)) - in_a2))
    # the same fit's communities without the rule (min_support 0): the undetermined entries cost the planted one
    from brainpipe.evaluate.communities import communities

    _, every = communities(
        fit["pair_factor"].values, fit["pair_i"].values, fit["pair_j"].values, fit.sizes["neuron"], 1.0, 0
    )
    planted = merge_truths([s.truth for s in sims])["membership"].sel(neuron=fit["neuron"].values).values
    kept = match_communities(fit["in_community"].values.astype(bool), planted.astype(bool))[0][2]
    unmasked = match_communities(every.astype(bool), planted.astype(bool))[0][2]
    assert kept >= 0.85 and kept > unmasked, (kept, unmasked)
    with pytest.raises(ConfigError, match="min_support"):
        DynamicConnectome(min_support=1.0).fit(tensor)


def test_stability_of_communities_compares_the_reported_communities(study):
    """community_similarity: Hungarian-matched mean Jaccard of two fits' communities; stability_of communities
    uses it in the replicate stability (same near-restart rule) and says so in the fit."""
    from brainpipe.models.connectome import community_similarity

    a = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0]], dtype=bool)
    assert community_similarity(a, a[::-1]) == 1.0  # order does not matter
    assert community_similarity(a, ~a) == pytest.approx((3 / 4 + 2 / 3) / 2)  # a0 with ~a1, a1 with ~a0
    assert community_similarity(a, a[:1]) == 0.5  # one community unmatched
    tensor = study[2].isel(window=slice(0, 60))
    kw = {"ranks": [2, 3, 4], "restarts": 3, "n_iter_max": 100, "device": "cpu", "seed": 0}
    by_comms = DynamicConnectome(**kw).fit(tensor)  # the default
    by_factors = DynamicConnectome(stability_of="factors", **kw).fit(tensor)
    for R in (2, 3, 4):  # same fits, same restarts counted; only the similarity differs
        assert by_comms.near_best_[R] == by_factors.near_best_[R]
        assert 0.0 <= by_comms.stability_[R] <= 1.0
    assert by_comms.stability_ != by_factors.stability_
    assert "(of the communities)" in by_comms.to_dataset(tensor).attrs["rank_selection"] or (
        not by_comms.rank_is_stable_
    )
    with pytest.raises(ConfigError, match="stability_of"):
        DynamicConnectome(stability_of="pairs").fit(tensor)
