"""Evaluation: metrics against planted truth and held-out data."""

from brainpipe.evaluate.metrics import METRICS, auroc, bits_per_spike, glm_metrics, metrics_dataset

__all__ = ["METRICS", "auroc", "bits_per_spike", "glm_metrics", "metrics_dataset"]

from brainpipe.evaluate.communities import communities  # noqa: E402

__all__ += ["communities"]
