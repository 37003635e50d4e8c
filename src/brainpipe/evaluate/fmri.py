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
  out-of-fold predictions are pooled and scored once. With a grid of read-outs, each outer fold's read-out is
  chosen on its validation fold ``(k + 1) % K`` before fold ``k`` is predicted.
* **Temporal encoder** (BrainMAE across segments): a test segment is reconstructed inside its sequence of
  non-overlapping segments with the same ROIs hidden in every segment of the sequence (its pattern), so no hidden
  value is seen at another time.
* **Ablations** (every BrainMAE variant but ``base``) are judged against the base variant (:func:`versus_base`:
  ``<metric>_vs_base`` with bars that the base wins), not held to the baselines' bars.
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
    "masked_nmse_vs_best_baseline": MetricInfo(
        "<", "masked-ROI NMSE minus the best reconstruction baseline's (negative: better than every baseline)"
    ),
    "masked_nmse_vs_ridge": MetricInfo(
        "<", "masked-ROI NMSE minus the segment ridge baseline's (negative: better than ridge)"
    ),
    "masked_nmse_vs_ridge_volume": MetricInfo("<", "masked-ROI NMSE minus the same-volume ridge baseline's"),
    "masked_nmse_vs_pca": MetricInfo("<", "masked-ROI NMSE minus the linear autoencoder (PCA) baseline's"),
    "masked_nmse_vs_mean": MetricInfo("<", "masked-ROI NMSE minus mean filling's"),
    "masked_nmse_shuffled_embeddings": MetricInfo(
        "<=", "masked-ROI NMSE with the ROI embeddings permuted (a control: should be worse)"
    ),
    "nmse_mean_fill": MetricInfo("<=", "baseline: hidden ROIs filled with their training mean"),
    "nmse_ridge": MetricInfo(
        "<=",
        "baseline: ridge of the hidden ROIs' segment on the visible ROIs' whole segment (penalty by inner CV)",
    ),
    "nmse_ridge_volume": MetricInfo(
        "<=", "baseline: ridge of hidden ROIs on visible ones at the same volume (penalty by inner CV)"
    ),
    "nmse_pca": MetricInfo(
        "<=",
        "baseline: linear autoencoder (PCA of whole segments, size by inner CV) completing the hidden ROIs",
    ),
    "nmse_best_baseline": MetricInfo("<=", "the least NMSE of the reconstruction baselines"),
    "ridge_log10_alpha": MetricInfo(
        "<=",
        "hyperparameter: log10 penalty of the segment ridge (inner CV on training data; median over masks)",
    ),
    "ridge_volume_log10_alpha": MetricInfo(
        "<=", "hyperparameter: log10 penalty of the same-volume ridge (inner CV; median over masks)"
    ),
    "masked_nmse_linear_path": MetricInfo(
        "<=", "masked-ROI NMSE of BrainMAE's linear path alone (linear_path: volume; encoder 0, no network)"
    ),
    "masked_nmse_vs_linear_path": MetricInfo(
        "<", "masked-ROI NMSE minus its linear path's alone (negative: the network's correction helps)"
    ),
    "linear_log10_alpha": MetricInfo(
        "<=",
        "hyperparameter: log10 penalty of BrainMAE's linear path (linear_path: volume; chosen on the validation "
        "fold; encoder 0)",
    ),
    "pca_n_components": MetricInfo(
        "<=", "hyperparameter: components of the PCA baseline (inner CV on training data)"
    ),
    "fc_kmeans_ari": MetricInfo(">=", "baseline: ARI of k-means on the rows of the training data's FC"),
    "fc_spectral_ari": MetricInfo(">=", "baseline: ARI of spectral clustering of the training data's FC"),
    "fc_clustering_ari": MetricInfo(">=", "the better FC-clustering ARI (k-means, spectral)"),
    "roi_embedding_ari_vs_fc_clustering": MetricInfo(
        ">=", "ROI-embedding ARI minus the best FC-clustering ARI"
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
    # an ablation against the base variant (issue 15: "each ablation worse than the base"); means over seeds
    "masked_nmse_vs_base": MetricInfo(
        ">", "ablation: masked-ROI NMSE minus the base variant's (positive: the base reconstructs better)"
    ),
    "roi_embedding_ari_vs_base": MetricInfo(
        "<",
        "ablation: ROI-embedding ARI minus the base variant's (negative: the base recovers the modules better)",
    ),
    "probe_accuracy_vs_base": MetricInfo(
        "<", "ablation: probe accuracy minus the base variant's (negative: the base probes better)"
    ),
    "probe_r2_vs_base": MetricInfo(
        "<", "ablation: probe R2 minus the base variant's (negative: the base is better)"
    ),
}
for _readout in ("similarity", "tokens", "mean", "cls"):
    for _key in ("accuracy", "r2"):
        FMRI_METRICS[f"probe_{_key}_readout_{_readout}"] = MetricInfo(
            ">=",
            f"outer folds whose probe read-out, chosen on the validation fold by {_key} from a grid, was {_readout}",
        )
#: the metrics an ablation is compared on with the base variant (:func:`versus_base`)
VERSUS_BASE = ("masked_nmse", "roi_embedding_ari", "probe_accuracy", "probe_r2")
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
for _name, _info in list(FMRI_METRICS.items()):
    if not _name.startswith(("nmse_", "fc_", "ridge_", "pca_")) and not _name.endswith("_vs_base"):
        FMRI_METRICS[f"{_name}_sd"] = MetricInfo(
            "<=", f"spread (SD over training seeds) of: {_info.description}"
        )
        FMRI_METRICS[f"{_name}_worst"] = MetricInfo(_info.op, f"worst training seed of: {_info.description}")
FMRI_METRICS["n_seeds"] = MetricInfo(">=", "training seeds the BrainMAE metrics are the mean over")
METRICS.update(FMRI_METRICS)


def versus_base(
    values: Mapping[str, float], base: Mapping[str, float], ablation_bars: Mapping[str, float] | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """An ablation's metrics and bars judged against the base variant, not the baselines.

    Adds ``<metric>_vs_base`` (ablation minus base, means over seeds) for the metrics of :data:`VERSUS_BASE` both
    runs have; the ablation's bars become ``ablation_bars`` (the base wins) and its baseline bars (``*_vs_<baseline>``,
    absolute bars) are dropped: an ablation is expected to be worse than the base, not to beat the baselines.

    Parameters
    ----------
    values : mapping
        The ablation's metrics.
    base : mapping
        The base variant's metrics (the same dataset and evaluation).
    ablation_bars : mapping, optional
        ``<metric>_vs_base`` -> bar (default: 0 for each, the base strictly better).

    Returns
    -------
    (dict, dict)
        The metrics with the ``_vs_base`` ones added, and the ablation's bars.
    """
    out = dict(values)
    for name in VERSUS_BASE:
        if name in values and name in base:
            out[f"{name}_vs_base"] = float(values[name]) - float(base[name])
    if ablation_bars is None:
        ablation_bars = {f"{n}_vs_base": 0.0 for n in VERSUS_BASE}
    return out, {k: float(v) for k, v in ablation_bars.items() if k in out}


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


#: the ridge baselines' penalty grid (chosen by inner cross-validation on the training data)
RIDGE_ALPHAS = np.logspace(-2, 5, 15)
#: the PCA baseline's numbers of components (chosen by inner cross-validation on the training data)
PCA_GRID = (1, 2, 4, 8, 16, 32, 64, 128)


def inner_splits(groups: np.ndarray, n_splits: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner cross-validation folds over training rows, whole groups held out together.

    Parameters
    ----------
    groups : numpy.ndarray
        (row,) group of each row (a subject, or a time block); with a single group, contiguous blocks of rows.
    n_splits : int, default 3
        Most inner folds.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        (fit, held-out) boolean masks over the rows.
    """
    groups = np.asarray(groups)
    n = len(groups)
    uniq = np.unique(groups)
    if len(uniq) < 2:
        chunks = [np.isin(np.arange(n), b) for b in np.array_split(np.arange(n), n_splits) if len(b)]
    else:
        chunks = [np.isin(groups, c) for c in np.array_split(uniq, min(n_splits, len(uniq)))]
    return [(~c, c) for c in chunks]


def _ridge_path(A: np.ndarray, B: np.ndarray, A_new: np.ndarray, alphas) -> list[np.ndarray]:
    """Ridge predictions for ``A_new`` at every penalty (intercept by centring), from one SVD of ``A``."""
    mu_a, mu_b = A.mean(0), B.mean(0)
    U, s, Vt = np.linalg.svd(A - mu_a, full_matrices=False)
    UtB = U.T @ (B - mu_b)
    P = (A_new - mu_a) @ Vt.T
    return [mu_b + (P * (s / (s**2 + a))) @ UtB for a in alphas]


def tuned_ridge(
    A: np.ndarray, B: np.ndarray, groups: np.ndarray, A_new: np.ndarray, alphas=RIDGE_ALPHAS
) -> tuple[np.ndarray, float]:
    """Ridge regression with its penalty chosen by grouped inner cross-validation, refitted on every row.

    Parameters
    ----------
    A, B : numpy.ndarray
        (row, feature) inputs and (row, output) targets of the training data.
    groups : numpy.ndarray
        (row,) group of each training row (:func:`inner_splits`).
    A_new : numpy.ndarray
        (row, feature) inputs to predict.
    alphas : array-like
        Penalty grid; the one with the least squared error pooled over the inner folds is kept.

    Returns
    -------
    (numpy.ndarray, float)
        Predictions for ``A_new`` and the chosen penalty.
    """
    err = np.zeros(len(alphas))
    for a, b in inner_splits(groups):
        for i, p in enumerate(_ridge_path(A[a], B[a], A[b], alphas)):
            err[i] += float(((B[b] - p) ** 2).sum())
    best = float(np.asarray(alphas)[int(np.argmin(err))])
    return _ridge_path(A, B, A_new, [best])[0], best


def _pca_basis(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = A.mean(0)
    return mu, np.linalg.svd(A - mu, full_matrices=False)[2].T


def _pca_fill(mu: np.ndarray, W: np.ndarray, V: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Linear-autoencoder completion of rows ``V``: codes by least squares on the visible entries, every entry
    decoded from the codes."""
    Z = np.linalg.lstsq(W[~hidden], (V[:, ~hidden] - mu[~hidden]).T, rcond=None)[0]
    return mu + (W @ Z).T


def _segment_pca(
    X_train: np.ndarray,
    X_test: np.ndarray,
    patterns: np.ndarray,
    index: np.ndarray,
    groups: np.ndarray,
) -> tuple[np.ndarray, int]:
    """PCA of whole segments (time x ROI flattened) as a linear autoencoder, its size by inner CV (the training
    segments cycle through the evaluation patterns)."""
    n, L, R = X_train.shape
    A = X_train.reshape(n, -1)
    flat = np.repeat(patterns[:, None, :], L, axis=1).reshape(len(patterns), -1)
    train_index = np.arange(n) % len(patterns)
    n_vis = int((~flat).sum(1).min())
    grid = [q for q in PCA_GRID if q < n_vis]
    err = np.zeros(len(grid))
    for a, b in inner_splits(groups):
        grid_ok = [q for q in grid if q < a.sum()]
        mu, W = _pca_basis(A[a])
        rows = np.flatnonzero(b)
        for p in np.unique(train_index[rows]):
            r = rows[train_index[rows] == p]
            for i, q in enumerate(grid):
                if q not in grid_ok:
                    err[i] = np.inf
                    continue
                pred = _pca_fill(mu, W[:, :q], A[r], flat[p])
                err[i] += float(((A[r][:, flat[p]] - pred[:, flat[p]]) ** 2).sum())
    q = int(grid[int(np.argmin(err))])
    mu, W = _pca_basis(A)
    out = np.array(X_test, dtype=np.float64).reshape(len(X_test), -1)
    for p in np.unique(index):
        sel = index == p
        out[sel] = _pca_fill(mu, W[:, :q], out[sel], flat[p])
    return out.reshape(X_test.shape), q


def reconstruction_baselines(
    X_train: np.ndarray,
    X_test: np.ndarray,
    patterns: np.ndarray,
    index: np.ndarray,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """The reconstruction baselines of the masked-ROI task, fitted on training segments only.

    Mean filling (each ROI's training mean); ridge of the hidden ROIs on the visible ones at the same volume
    (``nmse_ridge_volume``) and on the visible ROIs' whole segment (``nmse_ridge``: what BrainMAE sees); the linear
    autoencoder (PCA of whole segments, hidden entries completed from the visible ones, ``nmse_pca``). Ridge
    penalties (per pattern) and the number of components are chosen by inner cross-validation over ``groups``
    and recorded (``ridge_log10_alpha``, ``ridge_volume_log10_alpha``: medians over patterns;
    ``pca_n_components``).

    Parameters
    ----------
    X_train, X_test : numpy.ndarray
        (segment, time, roi) training and test segments.
    patterns : numpy.ndarray
        (pattern, roi) bool, True: hidden (:func:`eval_masks`).
    index : numpy.ndarray
        (test segment,) pattern of each test segment.
    groups : numpy.ndarray, optional
        (training segment,) subject or time block of each training segment (inner CV holds a group out together);
        None: contiguous blocks.

    Returns
    -------
    dict
        ``nmse_mean_fill``, ``nmse_ridge_volume``, ``nmse_ridge``, ``nmse_pca``, ``nmse_best_baseline`` (the least)
        and the chosen hyperparameters.
    """
    n, L, R = X_train.shape
    groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups)
    X_train = np.asarray(X_train, dtype=np.float64)
    masks = patterns[index]
    mean = X_train.mean(axis=(0, 1))
    fill = np.broadcast_to(mean, X_test.shape)
    vol = np.array(X_test, dtype=np.float64, copy=True)
    seg = vol.copy()
    a_vol, a_seg = [], []
    for p, pat in enumerate(patterns):
        sel = index == p
        if not sel.any():
            continue
        Xs = X_test[sel]
        pv, a = tuned_ridge(
            X_train[:, :, ~pat].reshape(-1, int((~pat).sum())),
            X_train[:, :, pat].reshape(-1, int(pat.sum())),
            np.repeat(groups, L),
            Xs[:, :, ~pat].reshape(-1, int((~pat).sum())),
        )
        out = vol[sel]
        out[:, :, pat] = pv.reshape(len(Xs), L, -1)
        vol[sel] = out
        a_vol.append(a)
        ps, a = tuned_ridge(
            X_train[:, :, ~pat].reshape(n, -1),
            X_train[:, :, pat].transpose(0, 2, 1).reshape(n, -1),
            groups,
            Xs[:, :, ~pat].reshape(len(Xs), -1),
        )
        out = seg[sel]
        out[:, :, pat] = ps.reshape(len(Xs), -1, L).transpose(0, 2, 1)
        seg[sel] = out
        a_seg.append(a)
    pca, q = _segment_pca(X_train, X_test, patterns, index, groups)
    out = {
        "nmse_mean_fill": nmse(X_test, fill, masks),
        "nmse_ridge_volume": nmse(X_test, vol, masks),
        "nmse_ridge": nmse(X_test, seg, masks),
        "nmse_pca": nmse(X_test, pca, masks),
    }
    out["nmse_best_baseline"] = min(out.values())
    out.update(
        {
            "ridge_log10_alpha": float(np.median(np.log10(a_seg))),
            "ridge_volume_log10_alpha": float(np.median(np.log10(a_vol))),
            "pca_n_components": float(q),
        }
    )
    return out


# ---- clustering ------------------------------------------------------------------------------------------------------
def module_ari(embeddings: np.ndarray, modules: np.ndarray, seed: int = 0) -> float:
    """ARI between k-means (k = number of planted modules; rows L2-normalised) on the embeddings and the modules."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    E = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    k = len(np.unique(modules))
    pred = KMeans(n_clusters=k, n_init=20, random_state=seed).fit_predict(E)
    return float(adjusted_rand_score(modules, pred))


def fc_clustering_ari(X_train: np.ndarray, modules: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The module-recovery baselines: clustering of the rows of the functional connectivity of training segments.

    Parameters
    ----------
    X_train : numpy.ndarray
        (segment, time, roi) training segments (the data the encoder whose embeddings are scored trained on).
    modules : numpy.ndarray
        (roi,) planted module of each ROI.
    seed : int, default 0
        Seed of k-means and of the spectral embedding.

    Returns
    -------
    dict
        ``fc_kmeans_ari`` (k-means on the L2-normalised FC rows, as :func:`module_ari` clusters embeddings),
        ``fc_spectral_ari`` (spectral clustering of the affinity ``(1 + FC) / 2``) and ``fc_clustering_ari`` (the
        better of the two).
    """
    from sklearn.cluster import SpectralClustering
    from sklearn.metrics import adjusted_rand_score

    R = X_train.shape[2]
    fc = np.corrcoef(np.asarray(X_train, dtype=np.float64).reshape(-1, R).T)
    fc = np.nan_to_num(fc)
    k = len(np.unique(modules))
    out = {"fc_kmeans_ari": module_ari(fc, modules, seed)}
    spec = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed, n_init=20)
    out["fc_spectral_ari"] = float(adjusted_rand_score(modules, spec.fit_predict((1.0 + fc) / 2.0)))
    out["fc_clustering_ari"] = max(out["fc_kmeans_ari"], out["fc_spectral_ari"])
    return out


# ---- downstream -----------------------------------------------------------------------------------------------------
def subject_means(features: np.ndarray, segment_subject: np.ndarray, n_subjects: int) -> np.ndarray:
    return np.stack([features[segment_subject == s].mean(axis=0) for s in range(n_subjects)])


def has_labels(ds: xr.Dataset) -> bool:
    return "label" in ds and ds.attrs.get("split_by", "subject") == "subject"


def has_target(ds: xr.Dataset) -> bool:
    return "target" in ds and ds.attrs.get("split_by", "subject") == "subject"


def fit_predict(
    Ftr: np.ndarray, ytr: np.ndarray, Fte: np.ndarray, task: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """L2 logistic regression or ridge on standardised features, the strength by inner CV on the training rows.

    Parameters
    ----------
    Ftr, Fte : numpy.ndarray
        (row, feature) training and test features.
    ytr : numpy.ndarray
        (row,) training labels or values.
    task : {"classification", "regression"}
        The model.
    seed : int, default 0
        Seed of the inner cross-validation's shuffling.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Predictions for ``Fte`` and, for classification, the last class's probability (else zeros).
    """
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if task == "classification":
        n_inner = int(max(2, min(4, np.bincount(ytr.astype(int)).min())))
        inner = StratifiedKFold(n_splits=n_inner, shuffle=True, random_state=seed)
        clf = make_pipeline(
            StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-3, 1, 9), cv=inner, max_iter=5000)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.9 announcing new attribute names
            clf.fit(Ftr, ytr)
        proba = clf.predict_proba(Fte)
        return clf.predict(Fte), (proba[:, -1] if proba.shape[1] > 1 else np.zeros(len(Fte)))
    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 30))).fit(Ftr, ytr)
    return reg.predict(Fte), np.zeros(len(Fte))


def cross_validate(
    features: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    y: np.ndarray,
    folds: np.ndarray,
    task: str,
    seed: int = 0,
) -> dict[str, float]:
    """Subject-wise k-fold: ``features(train_idx, test_idx) -> (F_train, F_test)`` (so a baseline may fit its
    feature map on the training subjects only); L2 logistic regression or ridge on standardised features, the
    strength chosen by an inner cross-validation on the training subjects only (:func:`fit_predict`); pooled
    out-of-fold scores."""
    n = len(y)
    pred = np.zeros(n)
    score = np.zeros(n)
    for k in np.unique(folds):
        tr, te = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        Ftr, Fte = features(tr, te)
        pred[te], score[te] = fit_predict(Ftr, y[tr], Fte, task, seed)
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


def segment_groups(ds: xr.Dataset) -> np.ndarray:
    """The inner cross-validation groups of a ``roi_segments`` dataset's segments: the subject (subject-split data)
    or the outer fold, a time block (single-subject data split in time)."""
    if ds.attrs.get("split_by", "subject") == "subject":
        return np.asarray(ds["segment_subject"].values)
    return np.asarray(ds["segment_fold"].values)


def baseline_metrics(ds: xr.Dataset, params: Mapping, modules: np.ndarray | None = None) -> dict[str, float]:
    """Every baseline of a dataset, on the folds and masks BrainMAE is scored on.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``roi_segments`` dataset.
    params : mapping
        ``mask_ratio``, ``n_patterns``, ``seed`` (as for the BrainMAE evaluation).
    modules : numpy.ndarray, optional
        (roi,) planted module of each ROI, in the dataset's ROI order (simulated data): adds the FC-clustering ARI.

    Returns
    -------
    dict
        Reconstruction (:func:`reconstruction_baselines`, fitted on encoder 0's training folds, scored on fold 0),
        FC clustering (:func:`fc_clustering_ari`) and FC downstream (:func:`fc_baselines`) metrics.
    """
    X = np.asarray(ds["signal"].values, dtype=np.float64)
    tr, _, te = pretrain_split(ds)
    seed = int(params["seed"])
    patterns, index = eval_masks(
        int(te.sum()), X.shape[2], float(params["mask_ratio"]), int(params["n_patterns"]), seed
    )
    out = reconstruction_baselines(X[tr], X[te], patterns, index, segment_groups(ds)[tr])
    if modules is not None:
        out.update(fc_clustering_ari(X[tr], np.asarray(modules), seed))
    out.update(fc_baselines(ds, seed))
    return out
