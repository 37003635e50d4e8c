"""A cohort of subjects with ROIs in modules, a planted group difference and a continuous phenotype (fMRI).

Generative model, per subject ``s`` (all at the repetition time ``TR``):

1. **Module signals** ``u(t)`` (``n_modules`` of them): AR(1) with coefficient ``ar_coef`` and correlated
   innovations, covariance ``Sigma_s`` = identity plus two planted between-module couplings:
   ``Sigma[0, 1] = coupling_base + class_effect * label_s`` (the **class difference**, label 0 or 1) and
   ``Sigma[2, 3] = phenotype_effect * phenotype_s`` (the **continuous phenotype**, uniform on [-1, 1]).
2. **Neural ROI signal** ``n_i(t) = l_i u_{module(i)}(t) + sqrt(1 - l_i^2) e_i(t)`` with loadings ``l_i`` drawn from
   ``[loading_min, loading_max]`` and private AR(1) noise ``e_i``.
3. **BOLD**: ``n_i`` convolved with the canonical double-gamma HRF (SPM shape), z-scored, plus white measurement
   noise (variance ``1 / snr``), a linear drift, and a **motion artefact**: the six rigid-body motion parameters
   (random walks, also written to the confounds table) enter every ROI with random weights.
4. A fraction of subjects get a few **high-motion volumes** (framewise displacement above 0.5 mm and a spike in
   the BOLD): scrubbing should remove them.

:func:`write_derivatives` writes a simulation as an fMRIPrep-like BIDS derivatives tree (4D NIfTI in a simple voxel
space, one labels atlas, confounds TSV with motion columns and their JSON, bold JSON sidecars with
``RepetitionTime``, ``participants.tsv``) and as ROI tables, so every ingest path of the fMRI branch can run on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe.errors import ConfigError
from brainpipe.simulate.base import Simulation, register

MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


@dataclass
class FMRICohortParams:
    """Parameters of :func:`fmri_modular_cohort` (times in seconds).

    Subjects with ROIs in modules; two classes differ in the coupling of modules 0 and 1, a continuous phenotype in
    [-1, 1] sets the coupling of modules 2 and 3; HRF-convolved BOLD with measurement noise, drift and a motion
    artefact; truth in ``truth.nc``.

    Parameters
    ----------
    n_subjects : int
        Subjects (half in each class).
    n_modules : int
        Modules (>= 4).
    rois_per_module : int
        ROIs in each module; ROIs are listed in random module order.
    n_volumes : int
        Volumes per run.
    tr_s : float
        Repetition time (s).
    ar_coef : float
        AR(1) coefficient of module and private signals (per TR).
    loading_min, loading_max : float
        Range of each ROI's loading on its module signal.
    coupling_base : float
        Innovation correlation of modules 0-1 in class 0 (base + effect x class).
    class_effect : float
        Added to the innovation correlation of modules 0-1 in class 1.
    phenotype_effect : float
        Innovation correlation of modules 2-3 = effect x phenotype.
    snr : float
        Signal-to-noise variance ratio of the BOLD.
    motion_scale : float
        Weight of the motion artefact.
    drift_scale : float
        Weight of the linear drift.
    high_motion_fraction : float
        Fraction of subjects with high-motion volumes (FD > 0.5 mm and a BOLD spike).
    n_high_motion_volumes : int
        High-motion volumes of each of those subjects.
    voxels_per_roi_side : int
        Each ROI is a cube of this many voxels a side in the NIfTI.
    voxel_noise : float
        Voxel noise relative to the ROI signal.
    """

    n_subjects: int = 40
    n_modules: int = 4
    rois_per_module: int = 8
    n_volumes: int = 300
    tr_s: float = 1.0
    ar_coef: float = 0.6
    loading_min: float = 0.6
    loading_max: float = 0.9
    coupling_base: float = 0.0
    class_effect: float = 0.6
    phenotype_effect: float = 0.5
    snr: float = 1.5
    motion_scale: float = 0.3
    drift_scale: float = 0.5
    high_motion_fraction: float = 0.25
    n_high_motion_volumes: int = 4
    voxels_per_roi_side: int = 2
    voxel_noise: float = 0.3

    def memory_bytes(self) -> tuple[float, str]:
        """Estimated peak allocation (bytes) and the keys that drive it: one subject's 4D image (the voxel grid of
        every ROI over the volumes) and the cohort's ROI time series, float64."""
        rois = float(self.n_modules * self.rois_per_module)
        voxels = (
            rois * float(self.voxels_per_roi_side) ** 3 * 8
        )  # the grid holds empty space between the ROIs
        per_subject = 3 * voxels * float(self.n_volumes)
        return 8.0 * (
            per_subject + 4 * self.n_subjects * self.n_volumes * rois
        ), "n_volumes x rois_per_module x n_subjects"

    def __post_init__(self):
        checks = [
            (self.n_subjects >= 4, "n_subjects must be >= 4"),
            (
                self.n_modules >= 4,
                "n_modules must be >= 4 (modules 0-1 carry the class effect, 2-3 the phenotype)",
            ),
            (self.rois_per_module >= 1, "rois_per_module must be >= 1"),
            (self.n_volumes >= 20, "n_volumes must be >= 20"),
            (self.tr_s > 0, "tr_s must be > 0"),
            (0 <= self.ar_coef < 1, "ar_coef must be in [0, 1)"),
            (0 < self.loading_min <= self.loading_max < 1, "need 0 < loading_min <= loading_max < 1"),
            (
                abs(self.coupling_base) + abs(self.class_effect) < 0.95,
                "|coupling_base| + |class_effect| must be < 0.95",
            ),
            (abs(self.phenotype_effect) < 0.95, "|phenotype_effect| must be < 0.95"),
            (self.snr > 0, "snr must be > 0"),
            (self.motion_scale >= 0 and self.drift_scale >= 0, "motion_scale and drift_scale must be >= 0"),
            (0 <= self.high_motion_fraction <= 1, "high_motion_fraction must be in [0, 1]"),
            (
                0 <= self.n_high_motion_volumes < self.n_volumes // 4,
                "n_high_motion_volumes must be < n_volumes / 4",
            ),
            (self.voxels_per_roi_side >= 1, "voxels_per_roi_side must be >= 1"),
            (self.voxel_noise >= 0, "voxel_noise must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"simulator 'fmri_modular_cohort': {msg}")

    @property
    def n_rois(self) -> int:
        return self.n_modules * self.rois_per_module


def canonical_hrf(tr_s: float, duration_s: float = 32.0) -> np.ndarray:
    """SPM's canonical double-gamma HRF sampled every ``tr_s`` seconds, normalised to unit sum."""
    from scipy.stats import gamma

    t = np.arange(0.0, duration_s, tr_s)
    h = gamma.pdf(t, 6.0) - gamma.pdf(t, 16.0) / 6.0
    return h / h.sum()


def _ar1(n: int, k: int, a: float, rng: np.random.Generator, chol: np.ndarray | None = None) -> np.ndarray:
    from scipy.signal import lfilter

    eps = rng.standard_normal((n + 50, k))
    if chol is not None:
        eps = eps @ chol.T
    x = lfilter([np.sqrt(1 - a * a)], [1.0, -a], eps, axis=0)
    return x[50:]


def roi_names(p: FMRICohortParams) -> list[str]:
    return [f"R{k + 1:02d}" for k in range(p.n_rois)]


@register("fmri_modular_cohort", FMRICohortParams, modality="fmri")
def fmri_modular_cohort(p: FMRICohortParams, seed: int) -> Simulation:
    """Subjects with ROIs in modules, two classes differing in one between-module coupling, and a phenotype.

    ``data``: ``bold(subject, time, roi)``, ``motion(subject, time, motion_param)``, ``framewise_displacement
    (subject, time)``; ``truth``: a model_fit (role truth) with ``module(roi)``, ``label(subject)``,
    ``phenotype(subject)``, ``coupling(subject, module_post, module_pre)`` and ``loading(roi)``.
    """
    rng = np.random.default_rng(seed)
    R, M, T = p.n_rois, p.n_modules, p.n_volumes
    # ROIs are listed in random module order (and named R01, R02, ...), so an ROI's position in the atlas or the
    # table says nothing about its module: fixed positional codes cannot recover the modules by construction
    module = rng.permutation(np.repeat(np.arange(M), p.rois_per_module))
    loading = rng.uniform(p.loading_min, p.loading_max, R)
    label = np.zeros(p.n_subjects, dtype=np.int64)
    label[rng.permutation(p.n_subjects)[: p.n_subjects // 2]] = 1
    phenotype = rng.uniform(-1.0, 1.0, p.n_subjects)
    hrf = canonical_hrf(p.tr_s)
    motion_w = rng.normal(0.0, p.motion_scale, (R, len(MOTION)))
    bold = np.empty((p.n_subjects, T, R))
    motion = np.empty((p.n_subjects, T, len(MOTION)))
    fd = np.empty((p.n_subjects, T))
    coupling = np.zeros((p.n_subjects, M, M))
    high_motion = np.zeros((p.n_subjects, T), dtype=bool)
    n_high = int(round(p.high_motion_fraction * p.n_subjects))
    high_subjects = set(rng.permutation(p.n_subjects)[:n_high].tolist())
    for s in range(p.n_subjects):
        sigma = np.eye(M)
        sigma[0, 1] = sigma[1, 0] = p.coupling_base + p.class_effect * label[s]
        sigma[2, 3] = sigma[3, 2] = p.phenotype_effect * phenotype[s]
        coupling[s] = sigma - np.eye(M)
        u = _ar1(T + len(hrf), M, p.ar_coef, rng, np.linalg.cholesky(sigma))
        e = _ar1(T + len(hrf), R, p.ar_coef, rng)
        neural = loading * u[:, module] + np.sqrt(1 - loading**2) * e
        x = np.apply_along_axis(lambda c: np.convolve(c, hrf)[len(hrf) : len(hrf) + T], 0, neural)
        x = (x - x.mean(0)) / x.std(0)
        x += rng.standard_normal((T, R)) / np.sqrt(p.snr)
        # motion: slow random walks (mm / rad-ish), centred; their effect enters every ROI linearly
        step = np.array([0.05, 0.05, 0.05, 0.001, 0.001, 0.001])  # mm, rad
        mot = np.cumsum(rng.normal(0.0, 1.0, (T, len(MOTION))) * step, axis=0)
        mot -= mot.mean(0)
        if s in high_subjects and p.n_high_motion_volumes:
            vols = rng.choice(np.arange(5, T - 5), p.n_high_motion_volumes, replace=False)
            high_motion[s, vols] = True
            mot[vols] += rng.normal(0.0, 1.0, (len(vols), len(MOTION))) * step * 16.0
            x[vols] += rng.normal(0.0, 6.0, (len(vols), R))
        d = np.vstack([np.zeros((1, len(MOTION))), np.diff(mot, axis=0)])
        fd[s] = np.abs(d[:, :3]).sum(1) + 50.0 * np.abs(d[:, 3:]).sum(
            1
        )  # Power et al. 2012, 50 mm head radius
        x += (mot / (mot.std(0) + 1e-9)) @ motion_w.T
        x += p.drift_scale * np.linspace(-1.0, 1.0, T)[:, None] * rng.normal(0.0, 1.0, R)
        bold[s], motion[s] = x, mot
    subjects = np.array([f"{s + 1:02d}" for s in range(p.n_subjects)])
    rois = np.array(roi_names(p))
    time = np.arange(T) * p.tr_s
    data = xr.Dataset(
        {
            "bold": (("subject", "time", "roi"), bold),
            "motion": (("subject", "time", "motion_param"), motion),
            "framewise_displacement": (("subject", "time"), fd),
            "high_motion": (("subject", "time"), high_motion),
        },
        coords={
            "subject": subjects,
            "time": ("time", time, {"units": "s"}),
            "roi": rois,
            "motion_param": np.array(MOTION),
        },
        attrs={"repetition_time_s": p.tr_s, "simulator": "fmri_modular_cohort", "seed": int(seed)},
    )
    mods = np.array([f"M{m}" for m in range(M)])
    truth = xr.Dataset(
        {
            "module": ("roi", module.astype(np.int64), {"long_name": "planted module of each ROI"}),
            "loading": ("roi", loading, {"long_name": "loading of each ROI on its module signal"}),
            "label": ("subject", label, {"long_name": "planted class (0/1)"}),
            "phenotype": ("subject", phenotype, {"long_name": "planted continuous phenotype"}),
            "coupling": (
                ("subject", "module_post", "module_pre"),
                coupling,
                {"long_name": "planted between-module innovation correlation"},
            ),
            "high_motion": (
                ("subject", "time"),
                high_motion.astype(np.int8),
                {"long_name": "planted high-motion volume"},
            ),
        },
        coords={
            "roi": rois,
            "subject": subjects,
            "module_post": mods,
            "module_pre": mods,
            "time": ("time", time, {"units": "s"}),
        },
        attrs={
            "model": "fmri_modular_cohort",
            "role": "truth",
            "repetition_time_s": p.tr_s,
            "seed": int(seed),
            "params": json.dumps(asdict(p)),
        },
    )
    return Simulation(data=data, truth=truth, data_kind="fmri_cohort")


# ---- writing the simulation as files ---------------------------------------------------------------------
def atlas_grid(p: FMRICohortParams) -> np.ndarray:
    """The labels atlas: ROI ``k`` (1-based label) is a cube of ``voxels_per_roi_side``^3 voxels; ROIs sit on a
    grid with one background voxel (label 0) around everything."""
    side = p.voxels_per_roi_side
    n = p.n_rois
    nx = int(np.ceil(np.sqrt(n)))
    ny = int(np.ceil(n / nx))
    shape = (nx * side + 2, ny * side + 2, side + 2)
    atlas = np.zeros(shape, dtype=np.int16)
    for k in range(n):
        i, j = k % nx, k // nx
        atlas[1 + i * side : 1 + (i + 1) * side, 1 + j * side : 1 + (j + 1) * side, 1 : 1 + side] = k + 1
    return atlas


AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def write_derivatives(sim: Simulation, folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write ``sim`` (from :func:`fmri_modular_cohort`) under ``folder``:

    * ``derivatives/fmriprep/sub-XX/func/sub-XX_task-rest_desc-preproc_bold.nii.gz`` (+ ``.json`` with
      ``RepetitionTime``), ``sub-XX_task-rest_desc-confounds_timeseries.tsv`` (+ ``.json``);
    * ``derivatives/fmriprep/dataset_description.json``, ``participants.tsv`` (``participant_id``, ``group``,
      ``score``);
    * ``atlas/atlas.nii.gz`` and ``atlas/atlas.tsv`` (``index``, ``name``);
    * ``tables/sub-XX_timeseries.tsv`` (one column per ROI, one row per volume).
    """
    import nibabel as nib
    import pandas as pd

    folder = Path(folder)
    data, truth = sim.data, sim.truth
    p = FMRICohortParams(**json.loads(truth.attrs["params"]))
    rng = np.random.default_rng(seed + 7919)
    atlas = atlas_grid(p)
    root = folder / "derivatives" / "fmriprep"
    (folder / "atlas").mkdir(parents=True, exist_ok=True)
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(atlas, AFFINE), folder / "atlas" / "atlas.nii.gz")
    rois = [str(r) for r in data["roi"].values]
    pd.DataFrame({"index": np.arange(1, len(rois) + 1), "name": rois}).to_csv(
        folder / "atlas" / "atlas.tsv", sep="\t", index=False
    )
    (root / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "brainpipe simulated cohort",
                "BIDSVersion": "1.8.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "brainpipe fmri_modular_cohort"}],
            },
            indent=1,
        )
    )
    labels = truth["label"].values
    groups = np.where(labels == 1, "patient", "control")
    pd.DataFrame(
        {
            "participant_id": [f"sub-{s}" for s in data["subject"].values],
            "group": groups,
            "score": np.round(truth["phenotype"].values, 6),
        }
    ).to_csv(root / "participants.tsv", sep="\t", index=False)
    tr = float(data.attrs["repetition_time_s"])
    lab = atlas.reshape(-1)
    in_roi = lab > 0
    for si, sub in enumerate(data["subject"].values):
        func = root / f"sub-{sub}" / "func"
        func.mkdir(parents=True, exist_ok=True)
        stem = f"sub-{sub}_task-rest"
        x = data["bold"].values[si]  # (time, roi)
        T = x.shape[0]
        vox = np.zeros((lab.size, T), dtype=np.float32)
        vox[in_roi] = (100.0 + 10.0 * x[:, lab[in_roi] - 1].T) + p.voxel_noise * 10.0 * rng.standard_normal(
            (in_roi.sum(), T)
        )
        vox[~in_roi] = 100.0 + rng.standard_normal(((~in_roi).sum(), T))
        img = nib.Nifti1Image(vox.reshape(*atlas.shape, T), AFFINE)
        img.header.set_xyzt_units("mm", "sec")
        img.header["pixdim"][4] = tr
        nib.save(img, func / f"{stem}_space-sim_desc-preproc_bold.nii.gz")
        (func / f"{stem}_space-sim_desc-preproc_bold.json").write_text(
            json.dumps({"RepetitionTime": tr, "TaskName": "rest", "SkullStripped": True}, indent=1)
        )
        mot = data["motion"].values[si]
        conf = {name: mot[:, k] for k, name in enumerate(MOTION)}
        for name in MOTION:
            d = np.concatenate([[np.nan], np.diff(conf[name])])
            conf[f"{name}_derivative1"] = d
            conf[f"{name}_power2"] = conf[name] ** 2
            conf[f"{name}_derivative1_power2"] = d**2
        fdv = data["framewise_displacement"].values[si].copy()
        fdv[0] = np.nan
        conf["framewise_displacement"] = fdv
        hm = data["high_motion"].values[si]
        dv = 1.0 + 0.1 * rng.standard_normal(T)
        dv[hm] = 3.0
        dv[0] = np.nan
        conf["std_dvars"] = dv
        conf["global_signal"] = x.mean(1)
        conf["white_matter"] = 0.1 * rng.standard_normal(T)
        conf["csf"] = 0.1 * rng.standard_normal(T)
        # discrete cosine basis for a 128 s high-pass, as fMRIPrep writes it
        n_cos = max(1, int(np.floor(2 * T * tr / 128.0)))
        n = np.arange(T)
        for k in range(1, n_cos + 1):
            conf[f"cosine{k - 1:02d}"] = np.sqrt(2.0 / T) * np.cos(np.pi * (2 * n + 1) * k / (2 * T))
        pd.DataFrame(conf).to_csv(
            func / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False, na_rep="n/a"
        )
        (func / f"{stem}_desc-confounds_timeseries.json").write_text(json.dumps({k: {} for k in conf}))
        pd.DataFrame(x, columns=rois).to_csv(
            folder / "tables" / f"sub-{sub}_timeseries.tsv", sep="\t", index=False, float_format="%.6g"
        )
    (folder / "tables" / "participants.tsv").write_text((root / "participants.tsv").read_text())
    return {"fmriprep": root, "atlas": folder / "atlas" / "atlas.nii.gz", "tables": folder / "tables"}
