"""The tiny Neuroformer settings the library, stage and distributed tests share (a few seconds of CPU each)."""

TRAIN = {"max_epochs": 1, "batch_size": 32, "lr": 0.003, "patience": None, "device": "cpu", "progress": False}
TOKENIZER = {"dt_s": 0.01, "window_s": 0.02, "past_window_s": 0.04, "block_size": 16, "past_block_size": 24}
MODEL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.0}


def tiny_net(**kw):
    """A tiny :class:`~brainpipe.models.neuroformer.NeuroformerNet` (8 ids, 7 dt tokens, blocks of 10 and 6 past
    tokens, one 1-d modality of 5 steps, d_model 16), seeded and in eval mode; ``kw`` adds network options."""
    import torch

    from brainpipe.models.neuroformer import NeuroformerNet

    torch.manual_seed(0)
    return NeuroformerNet(
        n_id=8, n_dt=7, block_size=10, past_block_size=6, modality_dims=[1], modality_len=5, d_model=16,
        n_heads=2, n_layers=1, dropout=0.0, **kw,
    ).eval()  # fmt: skip


def tiny_params(train: dict, **extra) -> dict:
    """Resolved ``neuroformer`` step parameters: the tiny tokenizer and model, ``train`` as the pretraining
    settings, no modality, seed 0, dataset ``hub``; ``extra`` adds or replaces keys."""
    return {
        "tokenizer": dict(TOKENIZER),
        "model": dict(MODEL),
        "pretrain": train,
        "modalities": {},
        "seed": 0,
        "dataset": "hub",
        **extra,
    }


def tiny_hub_counts(seed: int = 0):
    """A 6-neuron hub network (one hub, 30 s) binned at 10 ms in 2 time blocks: the counts the fine-tuning tests
    pretrain on."""
    from brainpipe.preprocess import bin_spikes
    from brainpipe.simulate import simulate

    params = {"n_neurons": 6, "n_hubs": 1, "hub_out_degree": 3, "n_other_connections": 1, "duration_s": 30.0}
    return bin_spikes(simulate("hub_network", params, seed=seed).data, 0.01, n_blocks=2)


def tiny_pretrained(params: dict):
    """(counts, pretrained model_fit dataset): :func:`tiny_hub_counts` and a Neuroformer pretrained on them."""
    from brainpipe.training.neuroformer import pretrain_neuroformer, pretrained_dataset

    counts = tiny_hub_counts()
    return counts, pretrained_dataset(pretrain_neuroformer(counts, params))


def assert_model_key_checked(key: str, bad, good) -> None:
    """The default study with ``neuroformer.model.<key>: bad`` fails config validation with one line naming the key
    and the file; with ``good`` it validates."""
    from pathlib import Path

    import pytest
    import yaml

    from brainpipe.config import validate_config
    from brainpipe.errors import ConfigError

    cfg = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    cfg["neuroformer"]["model"][key] = bad
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, source="my-study.yaml", check_paths=False)
    msg = str(e.value)
    assert "\n" not in msg and f"neuroformer.model.{key}" in msg and "my-study.yaml" in msg
    cfg["neuroformer"]["model"][key] = good
    validate_config(cfg, source="my-study.yaml", check_paths=False)
