"""The switching GLM's sticky transition prior (``sticky_kappa``, Fox et al. 2011): off it is the model without it
bit for bit; its MAP is the transitions' optimum; EM keeps raising the objective with it; it lengthens the states'
dwell times; bad values and config are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brainpipe.errors import ConfigError
from brainpipe.models.switching_glm import SwitchingGLM
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate import simulate

# a small case whose states are short-lived (stay 0.9: dwell ~10 bins) and weakly coupled
SMALL = {
    "n_neurons": 6,
    "n_states": 2,
    "n_sequences": 6,
    "n_test_sequences": 2,
    "sequence_length": 300,
    "stay_probability": 0.9,
}


@pytest.fixture(scope="module")
def small_counts():
    return bin_spikes(simulate("switching_glm_network", SMALL, seed=3).data, 0.02)


class _WithoutSticky(SwitchingGLM):
    """The transitions' update and prior as they were before the sticky prior existed (the reference of "kappa 0
    is today's model")."""

    def _transitions_map(self, gamma, xi_sum):
        c = self.transition_pseudocount
        A = xi_sum + (c - 1.0 if c > 1 else 0.0) + 1e-8
        pi = gamma[:, 0].sum(0) + 1e-8
        return torch.log(A / A.sum(1, keepdim=True)), torch.log(pi / pi.sum())

    def _transition_log_prior(self, log_A):
        c = self.transition_pseudocount
        return (c - 1.0) * log_A.sum() if c > 1 else log_A.new_zeros(())


@pytest.mark.parametrize("prior", ["none", "gaussian"])
def test_kappa_zero_is_the_model_without_it_bit_for_bit(small_counts, prior):
    kw = {"n_states": 2, "prior": prior, "link": "sigmoid", "n_iter": 8, "device": "cpu"}
    new = SwitchingGLM(sticky_kappa=0.0, **kw).fit(small_counts)
    old = _WithoutSticky(**kw).fit(small_counts)
    for name in ("weights_", "bias_", "log_A_", "log_pi_", "objective_"):
        np.testing.assert_array_equal(getattr(new, name), getattr(old, name), err_msg=name)


def test_transitions_map_maximises_the_expected_log_joint():
    """The closed-form update is the maximum of sum xi log A + log prior(A) over stochastic matrices (every row
    moved along the simplex loses), and it adds kappa to the diagonal only."""
    rng = np.random.default_rng(0)
    xi = torch.as_tensor(rng.uniform(1, 50, (3, 3)), dtype=torch.float64)
    gamma = torch.as_tensor(rng.dirichlet(np.ones(3), size=(2, 5)), dtype=torch.float64)
    m = SwitchingGLM(n_states=3, sticky_kappa=40.0, transition_pseudocount=2.0)
    log_A, _ = m._transitions_map(gamma, xi)
    expected = (xi + 1.0 + 40.0 * torch.eye(3, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(np.exp(log_A.numpy()), expected / expected.sum(1, keepdims=True), rtol=1e-7)

    def value(la):
        return float((xi * la).sum() + m._transition_log_prior(la))

    best = value(log_A)
    for _ in range(20):
        d = rng.normal(0, 0.01, (3, 3))
        d -= d.mean(1, keepdims=True)  # stays on the simplex
        A = np.exp(log_A.numpy()) + d
        assert value(torch.as_tensor(np.log(A))) < best


def test_em_objective_rises_with_the_sticky_prior(small_counts):
    m = SwitchingGLM(n_states=2, link="sigmoid", sticky_kappa=500.0, n_iter=12, tol=0.0, device="cpu")
    obj = m.fit(small_counts).objective_
    assert obj.size == 13
    assert np.all(np.diff(obj) >= -1e-6 * np.abs(obj[:-1])), np.diff(obj)
    assert obj[-1] > obj[0]


def _mean_dwell(viterbi: np.ndarray) -> float:
    changes = np.flatnonzero(np.diff(viterbi) != 0)
    return viterbi.size / (changes.size + 1)


def test_larger_kappa_gives_longer_dwell_times(small_counts):
    dwell, stay = [], []
    for kappa in (0.0, 300.0, 3000.0):
        m = SwitchingGLM(n_states=2, link="sigmoid", sticky_kappa=kappa, n_iter=15, device="cpu")
        m.fit(small_counts)
        _, vit = m.decode(small_counts)
        dwell.append(_mean_dwell(vit))
        stay.append(float(np.exp(np.diag(m.log_A_)).mean()))
    assert stay[0] < stay[1] < stay[2], stay
    assert dwell[0] < dwell[2], dwell
    assert dwell[1] <= dwell[2], dwell


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "many", None])
def test_bad_kappa_is_one_line(tiny_counts, bad):
    with pytest.raises(ConfigError, match=r"SwitchingGLM: sticky_kappa must be a finite number >= 0") as err:
        SwitchingGLM(sticky_kappa=bad).fit(tiny_counts)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"sticky_kappa": -5}, "key 'spikes.switching_glm.model.sticky_kappa'"),
        ({"select": {"sticky_kappa": []}}, "key 'spikes.switching_glm.model.select.sticky_kappa'"),
        ({"select": {"sticky_kappa": [0, -1]}}, "key 'spikes.switching_glm.model.select.sticky_kappa"),
    ],
)
def test_bad_kappa_in_the_config_is_one_line(model, message):
    from brainpipe.config import validate_config

    cfg = {
        "spikes": {
            "datasets": {"sim": {"simulate": {"generator": "switching_glm_network"}}},
            "switching_glm": {"model": model},
        }
    }
    schema = Path(__file__).parents[2] / "workflow/schemas/config.schema.yaml"
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, schema, source="study.yaml")
    assert str(err.value).startswith("study.yaml: ") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_kappa_is_searched_for_switching_variants_only_and_recorded():
    from brainpipe.models.switching_glm.select import relevant_grid

    grid = {"sticky_kappa": [0.0, 100.0], "l2": [1e-3, 1.0]}
    assert relevant_grid({"prior": "none", "n_states": 3}, grid) == grid
    assert relevant_grid({"prior": "none", "n_states": 1}, grid) == {"l2": [1e-3, 1.0]}


def test_kappa_is_stored_in_the_fit(small_counts):
    m = SwitchingGLM(n_states=2, link="sigmoid", sticky_kappa=50.0, n_iter=2, device="cpu").fit(small_counts)
    ds = m.to_dataset()
    assert ds.attrs["sticky_kappa"] == 50.0
    assert SwitchingGLM.from_dataset(ds, device="cpu").sticky_kappa == 50.0


def test_state_dwell_times_known_answer():
    from brainpipe.evaluate.switching import state_dwell_times

    vit = np.array([0, 0, 1, 1, 1, 0, 2, 2, -1, 1, 1, 1])
    seq = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    bins = np.ones(12, dtype=bool)
    bins[11] = False
    # visits: 0 x2, 1 x3, 0 x1 | (new sequence) 2 x2 | (undecoded bin) 1 x2 (the last bin is not selected)
    assert state_dwell_times(vit, seq, bins).tolist() == [2, 3, 1, 2, 2]
    assert state_dwell_times(vit, seq, np.zeros(12, dtype=bool)).size == 0
