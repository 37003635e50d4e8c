"""The same contract checks over every model (in the manner of scikit-learn's estimator checks).

Every estimator in ``brainpipe.models.ESTIMATORS``: the constructor only stores its arguments; a bad
hyperparameter fails in ``fit`` with a one-line error naming it; ``fit`` returns self and sets attributes ending in
``_``; methods that need a fit say so before it; ``score`` on held-out data is a finite float; ``to_dataset`` passes
the ``model_fit`` contract and ``save``/``load`` give back a model with the same score; ``set_params``/``clone``
work; and the study config forwards every constructor argument (its schema has a key for each).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SkNotFittedError

import brainpipe.models as models
from brainpipe.data import contracts
from brainpipe.data.io import stamp
from brainpipe.errors import BrainpipeError, ConfigError
from brainpipe.models import (
    ESTIMATORS,
    BrainMAE,
    DynamicConnectome,
    Estimator,
    Neuroformer,
    NotFittedError,
    PoissonGLM,
    SpikeTokenizer,
    SwitchingGLM,
)

REPO = Path(__file__).resolve().parents[2]
TINY_TRAIN = {
    "max_epochs": 1,
    "max_steps": 4,
    "batch_size": 16,
    "patience": None,
    "device": "cpu",
    "progress": False,
}


def _planted_tensor():
    """A small rank-2 non-negative affinity tensor (6 pairs x 8 windows x 2 animals, one pair missing in one)."""
    from contract_data import affinity_tensor

    ds = affinity_tensor()
    rng = np.random.default_rng(0)
    A, B, C = rng.random((3, 2)), rng.random((4, 2)), rng.random((2, 2))
    ds["affinity"].values[:] = np.einsum("ir,jr,kr->ijk", A, B, C)
    return ds


def _segments():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((24, 10, 6)).astype(np.float32)
    mask = np.zeros((24, 6), bool)
    mask[:, :2] = True
    return X, mask


# name -> (class, constructor kwargs, a bad hyperparameter, fit args, score args); data made lazily
CASES = {
    "PoissonGLM": (PoissonGLM, {"alpha": 1e-3, "max_iter": 50}, {"alpha": -1.0}, "counts", "counts"),
    "SwitchingGLM": (
        SwitchingGLM,
        {"n_states": 2, "n_iter": 3, "history_bins": 2, "device": "cpu", "seed": 0},
        {"prior": "laplace"},
        "counts",
        "counts",
    ),
    "BrainMAE": (
        BrainMAE,
        {
            "d_model": 8,
            "n_heads": 2,
            "n_layers": 1,
            "max_epochs": 1,
            "batch_size": 8,
            "device": "cpu",
            "progress": False,
        },
        {"mask_ratio": 1.5},
        "segments",
        "segments",
    ),
    "Neuroformer": (
        Neuroformer,
        {
            "tokenizer": SpikeTokenizer(window_s=0.02, past_window_s=0.04, block_size=16, past_block_size=24),
            "d_model": 16,
            "n_heads": 2,
            "n_layers": 1,
            "dropout": 0.0,
            "train": TINY_TRAIN,
        },
        {"d_model": 15},
        "counts",
        "counts",
    ),
    "DynamicConnectome": (
        DynamicConnectome,
        {"ranks": [1, 2], "restarts": 2, "n_iter_max": 30, "device": "cpu", "dtype": "float64"},
        {"dtype": "float16"},
        "tensor",
        "tensor",
    ),
}


def _data(kind, tiny_counts):
    if kind == "counts":
        return (tiny_counts,)
    if kind == "segments":
        X, mask = _segments()
        return (X,)
    return (_planted_tensor(),)


def _score_args(kind, tiny_counts):
    if kind == "counts":
        return (tiny_counts, "test")
    if kind == "segments":
        X, mask = _segments()
        return (X, mask)
    return (_planted_tensor(),)


@pytest.fixture(scope="module")
def fitted(tiny_counts):
    """Each model fitted once (module scope): name -> model."""
    out = {}
    for name, (cls, kw, _, fit_kind, _) in CASES.items():
        out[name] = cls(**kw).fit(*_data(fit_kind, tiny_counts))
    return out


def test_every_estimator_is_covered():
    found = {
        c
        for c in vars(models).values()
        if isinstance(c, type) and issubclass(c, Estimator) and c is not Estimator
    }
    assert found == set(ESTIMATORS) == {c for c, *_ in CASES.values()}


@pytest.mark.parametrize("name", CASES)
def test_constructor_only_stores_its_arguments(name):
    cls, kw, bad, *_ = CASES[name]
    est = cls(**kw)
    params = est.get_params(deep=False)
    sig = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
    assert list(params) == sorted(sig) or set(params) == set(sig)
    for k, v in kw.items():
        assert params[k] is v, f"{name}.__init__ changed {k}"
    assert not [k for k in vars(est) if k.endswith("_")], "fitted attributes set by the constructor"
    cls(**{**kw, **bad})  # a bad value is stored, not checked, by the constructor
    twin = clone(est)
    assert twin is not est and twin.get_params(deep=False).keys() == params.keys()
    first = sorted(sig)[0]
    assert est.set_params(**{first: "sentinel"}) is est and est.get_params()[first] == "sentinel"
    assert name in repr(est)


@pytest.mark.parametrize("name", CASES)
def test_bad_hyperparameter_fails_in_fit_with_one_line(name, tiny_counts):
    cls, kw, bad, fit_kind, _ = CASES[name]
    key = next(iter(bad))
    with pytest.raises(ConfigError) as err:
        cls(**{**kw, **bad}).fit(*_data(fit_kind, tiny_counts))
    assert key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", CASES)
def test_unfitted_model_says_so(name, tiny_counts):
    cls, kw, _, _, score_kind = CASES[name]
    est = cls(**kw)
    for call in (lambda: est.score(*_score_args(score_kind, tiny_counts)), est.to_dataset):
        with pytest.raises(NotFittedError, match="not fitted yet") as err:
            call()
        assert isinstance(err.value, SkNotFittedError) and isinstance(err.value, BrainpipeError)


@pytest.mark.parametrize("name", CASES)
def test_fit_returns_self_and_scores_held_out_data(name, fitted, tiny_counts):
    cls, kw, _, fit_kind, score_kind = CASES[name]
    est = fitted[name]
    assert isinstance(est, cls) and est.__sklearn_is_fitted__()
    assert [k for k in vars(est) if k.endswith("_")]
    score = est.score(*_score_args(score_kind, tiny_counts))
    assert isinstance(score, float) and np.isfinite(score)
    refit = cls(**kw)
    assert refit.fit(*_data(fit_kind, tiny_counts)) is refit


@pytest.mark.parametrize("name", CASES)
def test_dataset_roundtrip_and_save_load(name, fitted, tiny_counts, tmp_path, provenance):
    cls, _, _, _, score_kind = CASES[name]
    est = fitted[name]
    ds = est.to_dataset()
    assert ds.attrs["model"] == cls.model_name and ds.attrs["role"] == "fit"
    assert contracts.check(stamp(ds, "model_fit", provenance("unit-test")), "model_fit") == []
    path = est.save(tmp_path / f"{name}.nc")
    back = cls.load(path)
    assert type(back) is cls and back.__sklearn_is_fitted__()
    args = _score_args(score_kind, tiny_counts)
    assert back.score(*args) == pytest.approx(est.score(*args), rel=1e-5, abs=1e-6)
    other = next(c for c in ESTIMATORS if c is not cls and c.model_name)
    with pytest.raises(BrainpipeError, match="not a"):
        other.load(path)


# -- the study config forwards every constructor argument ----------------------------------------------------------
def _schema(name: str) -> dict:
    return yaml.safe_load((REPO / "workflow" / "schemas" / name).read_text())


def _props(schema: dict, node: dict) -> set[str]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return set(node.get("properties", {}))


def _config_keys() -> dict[type, set[str]]:
    main, fmri, calcium, nf = (
        _schema(f)
        for f in ("config.schema.yaml", "fmri.schema.yaml", "calcium.schema.yaml", "neuroformer.schema.yaml")
    )
    spikes = main["properties"]["spikes"]["properties"]
    nf_top = set(nf["properties"])
    return {
        PoissonGLM: _props(main, spikes["poisson_glm"]),
        SwitchingGLM: _props(main, spikes["switching_glm"]["properties"]["model"]),
        BrainMAE: _props(fmri, fmri["$defs"]["brainmae_model"]),
        DynamicConnectome: _props(calcium, calcium["properties"]["connectome"]["properties"]["model"]),
        # tokenizer, pretrain (-> train), finetune and seed are keys of the neuroformer section itself
        Neuroformer: _props(nf, nf["properties"]["model"])
        | {"tokenizer" if "tokenizer" in nf_top else "", "seed" if "seed" in nf_top else ""}
        | ({"train"} if "pretrain" in nf_top else set())
        | ({"finetune"} if "finetune" in nf_top else set()),
    }


# constructor arguments the runtime decides, not the study (where they come from)
RUNTIME = {
    SwitchingGLM: {"device"},  # the rule's resources (gpu) decide the device
    DynamicConnectome: {"device"},
}


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_config_forwards_every_constructor_argument(cls):
    keys = _config_keys()[cls]
    args = {k for k in inspect.signature(cls.__init__).parameters if k != "self"}
    missing = sorted(args - keys - RUNTIME.get(cls, set()))
    assert not missing, f"{cls.__name__}: constructor argument(s) the study config cannot set: {missing}"


@pytest.mark.parametrize("name", CASES)
def test_fit_too_big_for_the_machine_is_refused_before_allocating(name, tiny_counts, monkeypatch):
    cls, kw, _, fit_kind, _ = CASES[name]
    monkeypatch.setenv("BRAINPIPE_MAX_MEMORY_FRACTION", "1e-9")  # a few bytes
    with pytest.raises(
        ConfigError, match=rf"{name}: this fit needs about .* raise BRAINPIPE_MAX_MEMORY_FRACTION"
    ):
        cls(**kw).fit(*_data(fit_kind, tiny_counts))
