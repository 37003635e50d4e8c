"""Evaluation: metrics against planted truth and held-out data."""

from brainpipe.evaluate.metrics import (
    METRIC_PATTERNS,
    METRICS,
    auroc,
    bits_per_spike,
    glm_metrics,
    metric_info,
    metric_records,
    metrics_dataset,
    metrics_table,
)

__all__ = [
    "METRIC_PATTERNS",
    "METRICS",
    "auroc",
    "bits_per_spike",
    "glm_metrics",
    "metric_info",
    "metric_records",
    "metrics_dataset",
    "metrics_table",
]

from brainpipe.evaluate.communities import communities  # noqa: E402

__all__ += ["communities"]

from brainpipe.evaluate.sbm import fit_sbm, sbm_icl, sbm_loglik  # noqa: E402

__all__ += ["fit_sbm", "sbm_icl", "sbm_loglik"]
