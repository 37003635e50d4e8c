"""The tiny Neuroformer settings the library, stage and distributed tests share (a few seconds of CPU each)."""

TRAIN = {"max_epochs": 1, "batch_size": 32, "lr": 0.003, "patience": None, "device": "cpu", "progress": False}
TOKENIZER = {"dt_s": 0.01, "window_s": 0.02, "past_window_s": 0.04, "block_size": 16, "past_block_size": 24}
MODEL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.0}


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
