"""Neuroformer's contrastive weight chosen by validation decoding (issue 15, ``model.contrastive_select``): the
choice and every weight's validation losses recorded, only the train and validation windows read, bad values one
line (tiny sizes, a few seconds each)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainpipe.config import Study, validate_config
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer import Neuroformer
from neuroformer_tiny import TRAIN, tiny_hub_counts, tiny_params

PARAMS = tiny_params(
    TRAIN,
    model={"d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.0, "contrastive_dim": 4},
    modalities={"flash": {"source": "behaviour", "variables": ["flash"]}},
    target={"source": "behaviour", "variable": "speed"},
)


@pytest.fixture(scope="module")
def counts():
    return tiny_hub_counts()


def test_decoding_rule_chooses_by_the_validation_probe_and_records_it(counts, monkeypatch):
    from brainpipe.report.neuroformer import choices
    from brainpipe.training.neuroformer import pretrain_neuroformer, pretrained_dataset

    seen = []
    real_val, real_dec = Neuroformer._behaviour_val_loss, Neuroformer.decode_labelled

    def spy_val(self, win, kind, cw):
        seen.extend(np.unique(win.split).tolist())
        return real_val(self, win, kind, cw)

    def spy_dec(self, c, split="test", source="counts", **kw):
        seen.append(split)
        return real_dec(self, c, split, source, **kw)

    monkeypatch.setattr(Neuroformer, "_behaviour_val_loss", spy_val)
    monkeypatch.setattr(Neuroformer, "decode_labelled", spy_dec)
    params = {
        **PARAMS,
        "model": {**PARAMS["model"], "contrastive_grid": [0.0, 0.5], "contrastive_select": "decoding"},
    }
    model = pretrain_neuroformer(counts, params)
    a = pretrained_dataset(model).attrs
    dec_loss = json.loads(a["contrastive_grid_val_decoding_loss"])
    score = json.loads(a["contrastive_grid_val_decoding_score"])
    assert a["contrastive_select"] == "decoding" and "linear probe" in a["contrastive_selected_by"]
    sentence = choices(pretrained_dataset(model), None)
    assert f"contrastive weight {a['contrastive_weight']:g} (a linear probe's validation decoding" in sentence
    assert len(dec_loss) == len(score) == len(json.loads(a["contrastive_grid_val_token_loss"])) == 2
    best = min(range(2), key=lambda i: (-score[i], dec_loss[i]))  # the higher score (ties: the lower loss)
    assert a["contrastive_weight"] == [0.0, 0.5][best]
    assert all(np.isfinite(dec_loss)) and all(-1.0 < s <= 1.0 for s in score)  # R2 of speed
    # validation windows only (the probe's penalty and loss, the decoded windows): never the test windows
    assert set(seen) <= {SPLIT_FLAGS["validation"], "validation"} and "test" not in seen and seen
    # the kept network is left as pretraining made it (the probe fits a copy): no decoding target
    assert model.tokenizer_.target is None
    # the next-token rule (the default) records its own rule and no decoding losses
    nt = pretrained_dataset(
        pretrain_neuroformer(
            counts, {**params, "model": {**params["model"], "contrastive_select": "next_token"}}
        )
    )
    assert (
        nt.attrs["contrastive_select"] == "next_token"
        and "contrastive_grid_val_decoding_loss" not in nt.attrs
    )
    losses = json.loads(nt.attrs["contrastive_grid_val_token_loss"])
    assert nt.attrs["contrastive_weight"] == [0.0, 0.5][int(np.argmin(losses))]


def test_bad_contrastive_select_is_one_line():
    from brainpipe.training.neuroformer import contrastive_select

    grid = {**PARAMS, "model": {**PARAMS["model"], "contrastive_grid": [0.0, 0.2]}}
    with pytest.raises(
        ConfigError,
        match=r"^neuroformer model.contrastive_select: 'probe' is not one of next_token, decoding$",
    ):
        contrastive_select({**grid, "model": {**grid["model"], "contrastive_select": "probe"}})
    no_target = {**grid, "target": None, "model": {**grid["model"], "contrastive_select": "decoding"}}
    with pytest.raises(
        ConfigError, match=r"contrastive_select: decoding needs the dataset's decoding target"
    ):
        contrastive_select(no_target)
    # no grid (one weight): nothing is chosen, so no target is needed
    assert (
        contrastive_select({**no_target, "model": {**no_target["model"], "contrastive_grid": []}})
        == "decoding"
    )
    assert contrastive_select(PARAMS) == "next_token"


def test_config_gives_the_pretraining_step_the_target_only_for_decoding():
    def cfg(select):
        return {
            "spikes": {"datasets": {"sim": {"simulate": {"generator": "hub_network"}}}},
            "neuroformer": {
                "enabled": True,
                "model": {"contrastive_grid": [0.0, 0.2], "contrastive_select": select},
                "modalities": {"flash": {"source": "behaviour", "variables": ["flash"]}},
                "datasets": {
                    "sim": {"modalities": ["flash"], "target": {"source": "behaviour", "variable": "speed"}}
                },
            },
        }

    study = Study(validate_config(cfg("decoding"), check_paths=False))
    assert study.neuroformer_pretrain("sim")["target"]["variable"] == "speed"
    assert "target" not in Study(validate_config(cfg("next_token"), check_paths=False)).neuroformer_pretrain(
        "sim"
    )
    with pytest.raises(ConfigError, match=r"contrastive_select"):
        validate_config(cfg("probe"), check_paths=False)
