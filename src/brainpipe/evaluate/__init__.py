"""Evaluation: metrics against planted truth and held-out data."""

from brainpipe.evaluate.metrics import (
    METRICS,
    auroc,
    bits_per_spike,
    glm_metrics,
    metric_records,
    metrics_dataset,
    metrics_table,
)

__all__ = [
    "METRICS",
    "auroc",
    "bits_per_spike",
    "glm_metrics",
    "metric_records",
    "metrics_dataset",
    "metrics_table",
]

from brainpipe.evaluate.communities import communities  # noqa: E402

__all__ += ["communities"]
