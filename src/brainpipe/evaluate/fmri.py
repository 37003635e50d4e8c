"""fMRI metrics: masked-ROI reconstruction (NMSE) vs mean filling and ridge, ROI-embedding clustering (ARI) vs the
planted modules, downstream classification (accuracy/AUROC) and regression (R2/MAE) with subject-wise k-fold
cross-validation, against functional-connectivity baselines (nilearn ``ConnectivityMeasure`` correlation and
tangent + scikit-learn logistic/ridge).

Protocol (shared by the BrainMAE and the baseline stages, so every number is on the same data):

* **Splits** come from the ``roi_segments`` file: ``segment_fold`` (``K`` folds). BrainMAE pretrains one encoder
  per outer fold ``k`` (:func:`fold_split`: test fold ``k``, validation fold ``(k + 1) % K`` for early stopping,
  training on the rest), so no encoder ever sees the subjects it is tested on. Reconstruction is scored on fold 0
  (held-out subjects, or a held-out time block for a single-subject dataset) with encoder 0, and the baselines are
  fitted on the same training folds (>= 2).
* **Masks**: ``n_patterns`` random ROI masks hiding ``round(mask_ratio * R)`` ROIs, drawn from ``seed``; test segment
  ``i`` gets pattern ``i mod n_patterns``. The ridge baseline is fitted per pattern (predicting the hidden ROIs from
  the visible ones at the same volume) on the training folds' volumes; mean filling predicts each ROI's training
  mean. NMSE = ``sum (x - x_hat)^2 / sum x^2`` over hidden entries (signals are z-scored: predicting 0 scores ~1).
* **Downstream** (subject-split datasets with labels/targets): k-fold by subject over ``fold(subject)``; features
  are averaged over each subject's segments; test fold ``k`` uses encoder ``k`` (probe features and fine-tuning);
  out-of-fold predictions are pooled and scored once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import numpy as np
import xarray as xr

from brainpipe.evaluate.metrics import METRICS, MetricInfo, auroc

FMRI_METRICS: dict[str, MetricInfo] = {
    "masked_nmse": MetricInfo(
        "<=", "masked-ROI NMSE on held-out data (hidden ROIs reconstructed from the visible ones)"
    ),
    "masked_nmse_vs_ridge": MetricInfo(
        "<", "masked-ROI NMSE minus the ridge baseline's (negative: better than ridge)"
    ),
    "masked_nmse_vs_mean": MetricInfo("<", "masked-ROI NMSE minus mean filling's"),
    "masked_nmse_shuffled_embeddings": MetricInfo(
        "<=", "masked-ROI NMSE with the ROI embeddings permuted (a control: should be worse)"
    ),
    "nmse_mean_fill": MetricInfo("<=", "baseline: hidden ROIs filled with their training mean"),
    "nmse_ridge": MetricInfo(
        "<=",
        "baseline: ridge regression of hidden ROIs on visible ones (same volume), fitted on the training subjects",
    ),
    "roi_embedding_ari": MetricInfo(
        ">=", "adjusted Rand index of k-means on the ROI embeddings vs the planted modules"
    ),
    "probe_accuracy": MetricInfo(
        ">=", "linear probe (logistic) on frozen features, subject-wise k-fold accuracy"
    ),
    "probe_auroc": MetricInfo(">=", "linear probe, subject-wise k-fold AUROC"),
    "probe_accuracy_vs_fc": MetricInfo(
        ">=", "probe accuracy minus the best functional-connectivity baseline's"
    ),
    "probe_r2": MetricInfo(
        ">=", "linear probe (ridge) on frozen features, subject-wise k-fold R2 of the phenotype"
    ),
    "probe_mae": MetricInfo(
        "<=", "linear probe (ridge), subject-wise k-fold mean absolute error of the phenotype"
    ),
    "probe_r2_vs_fc": MetricInfo(">=", "probe R2 minus the best functional-connectivity baseline's"),
    "finetune_accuracy": MetricInfo(
        ">=", "full fine-tuning (encoder + linear head), subject-wise k-fold accuracy"
    ),
    "finetune_auroc": MetricInfo(">=", "full fine-tuning, subject-wise k-fold AUROC"),
    "finetune_r2": MetricInfo(">=", "full fine-tuning, subject-wise k-fold R2 of the phenotype"),
    "finetune_mae": MetricInfo("<=", "full fine-tuning, subject-wise k-fold MAE of the phenotype"),
    "pretrain_seconds": MetricInfo("<=", "wall time of the masked pretraining (s)"),
}
for kind in ("correlation", "tangent"):
    FMRI_METRICS.update(
        {
            f"fc_{kind}_accuracy": MetricInfo(
                ">=", f"FC ({kind}) + logistic regression, subject-wise k-fold accuracy"
            ),
            f"fc_{kind}_auroc": MetricInfo(
                ">=", f"FC ({kind}) + logistic regression, subject-wise k-fold AUROC"
            ),
            f"fc_{kind}_r2": MetricInfo(
                ">=", f"FC ({kind}) + ridge, subject-wise k-fold R2 of the phenotype"
            ),
            f"fc_{kind}_mae": MetricInfo(
                "<=", f"FC ({kind}) + ridge, subject-wise k-fold MAE of the phenotype"
            ),
        }
    )
METRICS.update(FMRI_METRICS)


# ---- splits and masks ------------------------------------------------------------------------------------------
def n_folds(ds: xr.Dataset) -> int:
    """Number of outer folds of a ``roi_segments`` file (``max(segment_fold) + 1``)."""
    return int(np.asarray(ds["segment_fold"].values).max()) + 1


def fold_split(ds: xr.Dataset, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean (train, validation, test) masks over segments for outer fold ``k`` of ``K``: test = fold ``k``,
    validation = fold ``(k + 1) % K``, train = every other fold."""
    f = np.asarray(ds["segment_fold"].values)
    K = n_folds(ds)
    te, va = f == k, f == (k + 1) % K
    return ~te & ~va, va, te


def pretrain_split(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outer fold 0 (:func:`fold_split`): train folds >= 2, validation fold 1, test fold 0."""
    return fold_split(ds, 0)


def eval_masks(
    n_segments: int, n_rois: int, ratio: float, n_patterns: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(patterns (P, R) bool, index (n_segments,))``: segment ``i`` hides ``patterns[index[i]]``."""
    rng = np.random.default_rng(seed)
    k = min(n_rois - 1, max(1, int(round(ratio * n_rois))))
    patterns = rng.random((n_patterns, n_rois)).argsort(axis=1) < k
    return patterns, np.arange(n_segments) % n_patterns


def nmse(X: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    m = np.broadcast_to(np.asarray(mask, bool)[:, None, :], X.shape)
    return float(((X - pred) ** 2)[m].sum() / max((X**2)[m].sum(), 1e-12))


def reconstruction_baselines(
    X_train: np.ndarray, X_test: np.ndarray, patterns: np.ndarray, index: np.ndarray, alpha: float = 1.0
) -> dict[str, float]:
    """NMSE of mean filling and of per-pattern ridge regression (hidden ROIs on visible ones, same volume)."""
    from sklearn.linear_model import Ridge

    R = X_train.shape[2]
    A = X_train.reshape(-1, R)
    mean = X_train.mean(axis=(0, 1))
    masks = patterns[index]
    fill = np.broadcast_to(mean, X_test.shape)
    pred = np.array(X_test, dtype=np.float64, copy=True)
    for p, pat in enumerate(patterns):
        sel = index == p
        if not sel.any():
            continue
        reg = Ridge(alpha=alpha).fit(A[:, ~pat], A[:, pat])
        B = X_test[sel].reshape(-1, R)
        out = pred[sel].reshape(-1, R)
        out[:, pat] = reg.predict(B[:, ~pat])
        pred[sel] = out.reshape(pred[sel].shape)
    return {"nmse_mean_fill": nmse(X_test, fill, masks), "nmse_ridge": nmse(X_test, pred, masks)}


# ---- clustering ------------------------------------------------------------------------------------------------------
def module_ari(embeddings: np.ndarray, modules: np.ndarray, seed: int = 0) -> float:
    """ARI between k-means (k = number of planted modules; rows L2-normalised) on the embeddings and the modules."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    E = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    k = len(np.unique(modules))
    pred = KMeans(n_clusters=k, n_init=20, random_state=seed).fit_predict(E)
    return float(adjusted_rand_score(modules, pred))


# ---- downstream -----------------------------------------------------------------------------------------------------
def subject_means(features: np.ndarray, segment_subject: np.ndarray, n_subjects: int) -> np.ndarray:
    return np.stack([features[segment_subject == s].mean(axis=0) for s in range(n_subjects)])


def has_labels(ds: xr.Dataset) -> bool:
    return "label" in ds and ds.attrs.get("split_by", "subject") == "subject"


def has_target(ds: xr.Dataset) -> bool:
    return "target" in ds and ds.attrs.get("split_by", "subject") == "subject"


def cross_validate(
    features: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    y: np.ndarray,
    folds: np.ndarray,
    task: str,
    seed: int = 0,
) -> dict[str, float]:
    """Subject-wise k-fold: ``features(train_idx, test_idx) -> (F_train, F_test)`` (so a baseline may fit its
    feature map on the training subjects only); L2 logistic regression or ridge on standardised features, the
    strength chosen by an inner cross-validation on the training subjects only; pooled out-of-fold scores."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(y)
    pred = np.zeros(n)
    score = np.zeros(n)
    for k in np.unique(folds):
        tr, te = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        Ftr, Fte = features(tr, te)
        if task == "classification":
            n_inner = int(max(2, min(4, np.bincount(y[tr].astype(int)).min())))
            inner = StratifiedKFold(n_splits=n_inner, shuffle=True, random_state=seed)
            clf = make_pipeline(
                StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-3, 1, 9), cv=inner, max_iter=5000)
            )
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", FutureWarning
                )  # scikit-learn 1.9 announcing new attribute names
                clf.fit(Ftr, y[tr])
            pred[te] = clf.predict(Fte)
            proba = clf.predict_proba(Fte)
            score[te] = proba[:, -1] if proba.shape[1] > 1 else 0.0
        else:
            reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 30))).fit(Ftr, y[tr])
            pred[te] = reg.predict(Fte)
    return score_predictions(y, pred, score, task)


def score_predictions(
    y: np.ndarray, pred: np.ndarray, score: np.ndarray | None, task: str
) -> dict[str, float]:
    if task == "classification":
        out = {"accuracy": float(np.mean(pred == y))}
        out["auroc"] = (
            auroc(y == np.max(y), score) if score is not None and len(np.unique(y)) == 2 else float("nan")
        )
        return out
    ss = float(((y - y.mean()) ** 2).sum())
    return {
        "r2": 1.0 - float(((y - pred) ** 2).sum()) / max(ss, 1e-12),
        "mae": float(np.mean(np.abs(y - pred))),
    }


def subject_timeseries(ds: xr.Dataset) -> list[np.ndarray]:
    """Each subject's segments concatenated in time (volume x ROI), for connectivity."""
    X = np.asarray(ds["signal"].values, dtype=np.float64)
    s = np.asarray(ds["segment_subject"].values)
    return [X[s == i].reshape(-1, X.shape[2]) for i in range(ds.sizes["subject"])]


def fc_baselines(ds: xr.Dataset, seed: int = 0) -> dict[str, float]:
    """FC (correlation, tangent; ConnectivityMeasure fitted on the training subjects of each fold) + logistic/ridge."""
    from nilearn.connectome import ConnectivityMeasure

    out: dict[str, float] = {}
    ts = subject_timeseries(ds)
    folds = np.asarray(ds["fold"].values)
    for kind in ("correlation", "tangent"):

        def feats(tr, te, kind=kind):
            cm = ConnectivityMeasure(
                kind=kind, vectorize=True, discard_diagonal=True, standardize="zscore_sample"
            )
            return cm.fit_transform([ts[i] for i in tr]), cm.transform([ts[i] for i in te])

        if has_labels(ds):
            res = cross_validate(feats, np.asarray(ds["label"].values), folds, "classification", seed=seed)
            out.update({f"fc_{kind}_accuracy": res["accuracy"], f"fc_{kind}_auroc": res["auroc"]})
        if has_target(ds):
            res = cross_validate(
                feats, np.asarray(ds["target"].values, dtype=np.float64), folds, "regression"
            )
            out.update({f"fc_{kind}_r2": res["r2"], f"fc_{kind}_mae": res["mae"]})
    return out


def baseline_metrics(ds: xr.Dataset, params: Mapping) -> dict[str, float]:
    """Every baseline of a dataset: reconstruction (mean filling, ridge) and FC downstream."""
    X = np.asarray(ds["signal"].values, dtype=np.float64)
    tr, _, te = pretrain_split(ds)
    patterns, index = eval_masks(
        int(te.sum()), X.shape[2], float(params["mask_ratio"]), int(params["n_patterns"]), int(params["seed"])
    )
    out = reconstruction_baselines(X[tr], X[te], patterns, index, float(params.get("ridge_alpha", 1.0)))
    out.update(fc_baselines(ds, int(params["seed"])))
    return out
