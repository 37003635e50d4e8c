"""A study resolved once into per-step parameters, every cross-check run on the resolved values.

:class:`Study` takes a validated config (schema defaults filled in) and answers, for every step of the workflow,
the parameters that step gets: the global keys of its section, deep-merged with the dataset's (or study's,
variant's) overrides. The Snakemake rules call it (``workflow/rules/*_common.smk``), so what a rule passes to its
stage is computed in one place, in Python; a stage reads its parameters without fallback defaults.

Because the checks run on the resolved parameters of every (dataset, variant) the workflow will run, a bad
per-dataset override fails at config time with its full key, like a bad global value.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from brainpipe.config._keys import (
    CALCIUM_INGEST_KEYS,
    CONNECTOME_ALIGN_KEYS,
    LAYERS,
    NF_SECTIONS,
    SPIKE_INGEST_KEYS,
    _pick,
    merged,
)
from brainpipe.errors import ConfigError


class Study:
    """A validated study config, resolved into the parameters of each step.

    Parameters
    ----------
    config : mapping
        A config returned by :func:`brainpipe.config.validate_config` (defaults filled in).
    source : str
        How to name the config in error messages (its file names).
    check : bool, default True
        Run :meth:`check` (every cross-check on the resolved parameters) now.

    Examples
    --------
    >>> from brainpipe.config import load_study
    >>> study = load_study("config/config.yaml")  # doctest: +SKIP
    >>> study.bin("steinmetz1")["bin_width_s"]  # doctest: +SKIP
    0.01
    """

    def __init__(self, config: Mapping[str, Any], source: str = "config", check: bool = True):
        self.config = copy.deepcopy(dict(config))
        self.source = source
        if check:
            self.check()

    # -- spikes -----------------------------------------------------------------------------------------------------
    @property
    def _spikes(self) -> dict[str, Any]:
        return self.config.get("spikes", {})

    def spike_datasets(self) -> dict[str, Any]:
        """Spike dataset name -> its entry.

        %(datasets_returns)s
        """
        return self._spikes.get("datasets", {})

    def simulate(self, dataset: str) -> dict[str, Any]:
        """``simulate`` (spikes): generator, seed, params.

        %(spike_dataset_parameters)s

        %(simulate_returns)s
        """
        return copy.deepcopy(self.spike_datasets()[dataset]["simulate"])

    def ingest(self, dataset: str) -> dict[str, Any]:
        """``ingest_spikes``: the reader keys of the dataset.

        %(spike_dataset_parameters)s

        Returns
        -------
        dict
            The dataset's reader keys (``path``, ``format``, ``options``, ``t_start_s``, ``t_stop_s``) it has.
        """
        return _pick(self.spike_datasets()[dataset], SPIKE_INGEST_KEYS)

    def bin(self, dataset: str) -> dict[str, Any]:
        """``bin_spikes`` and ``calcium_counts``: ``spikes.bin`` merged with ``spikes.datasets.<dataset>.bin``.

        %(spike_dataset_parameters)s

        Returns
        -------
        dict
            The binning, split and unit-QC parameters.
        """
        return self._merged("bin", dataset)

    def poisson_glm(self) -> dict[str, Any]:
        """``fit_poisson_glm``: ``spikes.poisson_glm`` without ``enabled``.

        Returns
        -------
        dict
            The :class:`~brainpipe.models.PoissonGLM` hyperparameters.
        """
        return {k: v for k, v in copy.deepcopy(self._spikes.get("poisson_glm", {})).items() if k != "enabled"}

    def evaluate(self, dataset: str) -> dict[str, Any]:
        """``evaluate_poisson_glm``: ``spikes.evaluate`` and the dataset name.

        %(spike_dataset_parameters)s

        Returns
        -------
        dict
            The evaluation settings and bars, with ``dataset``.
        """
        return dict(copy.deepcopy(self._spikes.get("evaluate", {})), dataset=dataset)

    @property
    def _switching(self) -> dict[str, Any]:
        return self._spikes.get("switching_glm", {})

    def switching_variants(self, dataset: str) -> list[str]:
        """The switching-GLM variants fitted on ``dataset``.

        %(spike_dataset_parameters)s

        %(variants_returns)s
        """
        sw = self._switching
        return list(sw["datasets"][dataset].get("variants", sorted(sw.get("variants", {}))))

    def switching(self, dataset: str, variant: str) -> dict[str, Any]:
        """``fit_switching_glm``: ``model`` <- ``variants.<variant>`` <- ``datasets.<dataset>.model``.

        %(switching_parameters)s

        Returns
        -------
        dict
            The :class:`~brainpipe.models.SwitchingGLM` hyperparameters.
        """
        return self._merged("switching", dataset, variant)

    def switching_evaluate(self, dataset: str, variant: str) -> dict[str, Any]:
        """``evaluate_switching_glm``: bars (global <- dataset's), dataset and variant names.

        %(switching_parameters)s

        Returns
        -------
        dict
            ``bars``, ``dataset`` and ``variant``.
        """
        sw = self._switching
        bars = merged(sw.get("bars"), sw["datasets"][dataset].get("bars"))
        return {"bars": bars, "dataset": dataset, "variant": variant}

    # -- fMRI -------------------------------------------------------------------------------------------------------
    @property
    def _fmri(self) -> dict[str, Any]:
        return self.config.get("fmri", {})

    def fmri_datasets(self) -> dict[str, Any]:
        """The fMRI datasets: name -> entry.

        %(datasets_returns)s
        """
        return self._fmri.get("datasets", {})

    def fmri_clean(self, dataset: str) -> dict[str, Any]:
        """``clean_fmri``: ``fmri.clean`` <- ``fmri.datasets.<dataset>.clean``, and the dataset's targets.

        %(fmri_dataset_parameters)s

        Returns
        -------
        dict
            The cleaning and segmenting parameters, with ``classification`` and ``regression``.
        """
        ds = self.fmri_datasets()[dataset]
        out = self._merged("fmri_clean", dataset)
        out.update(classification=ds.get("classification"), regression=ds.get("regression"))
        return out

    def fmri_evaluate(self, dataset: str) -> dict[str, Any]:
        """``fmri_baselines``: ``fmri.brainmae.evaluate`` and the dataset name.

        %(fmri_dataset_parameters)s

        Returns
        -------
        dict
            The evaluation settings, with ``dataset``.
        """
        return dict(copy.deepcopy(self._fmri.get("brainmae", {}).get("evaluate", {})), dataset=dataset)

    def brainmae_evaluate(self, dataset: str, variant: str) -> dict[str, Any]:
        """``evaluate_brainmae``: evaluation settings, fine-tuning (on for the listed variants), bars, names.

        %(brainmae_parameters)s

        Returns
        -------
        dict
            The evaluation settings, ``finetune``, ``bars``, ``dataset`` and ``variant``.
        """
        bm = self._fmri.get("brainmae", {})
        entry = bm.get("datasets", {}).get(dataset, {})
        ft = copy.deepcopy(dict(bm.get("finetune", {})))
        ft["enabled"] = bool(ft.get("enabled")) and variant in ft.pop("variants", [])
        return dict(
            copy.deepcopy(bm.get("evaluate", {})),
            finetune=ft,
            bars=merged(bm.get("bars"), entry.get("bars")),
            dataset=dataset,
            variant=variant,
        )

    def brainmae(self, dataset: str, variant: str) -> dict[str, Any]:
        """``pretrain_brainmae``: ``brainmae.model`` <- ``variants.<variant>`` <- ``datasets.<dataset>.model``.

        %(brainmae_parameters)s

        Returns
        -------
        dict
            The :class:`~brainpipe.models.BrainMAE` model and training parameters.
        """
        return self._merged("brainmae", dataset, variant)

    def brainmae_variants(self, dataset: str) -> list[str]:
        """The BrainMAE variants pretrained on ``dataset``.

        %(fmri_dataset_parameters)s

        %(variants_returns)s
        """
        bm = self._fmri.get("brainmae", {})
        return list(bm.get("datasets", {}).get(dataset, {}).get("variants", sorted(bm.get("variants", {}))))

    # -- calcium ----------------------------------------------------------------------------------------------------
    @property
    def _calcium(self) -> dict[str, Any]:
        return self.config.get("calcium", {})

    def calcium_datasets(self) -> dict[str, Any]:
        """Calcium dataset name -> its entry.

        %(datasets_returns)s
        """
        return self._calcium.get("datasets", {})

    def calcium_simulate(self, dataset: str) -> dict[str, Any]:
        """``simulate`` (calcium): generator, seed, params.

        %(calcium_dataset_parameters)s

        %(simulate_returns)s
        """
        return copy.deepcopy(self.calcium_datasets()[dataset]["simulate"])

    def calcium_ingest(self, dataset: str) -> dict[str, Any]:
        """``ingest_calcium``: the reader keys of the dataset.

        %(calcium_dataset_parameters)s

        Returns
        -------
        dict
            The dataset's reader keys it has.
        """
        return _pick(self.calcium_datasets()[dataset], CALCIUM_INGEST_KEYS)

    def calcium_preprocess(self, dataset: str) -> dict[str, Any]:
        """``preprocess_calcium``: ``calcium.preprocess`` <- ``calcium.datasets.<dataset>.preprocess``.

        %(calcium_dataset_parameters)s

        Returns
        -------
        dict
            The :func:`~brainpipe.preprocess.preprocess_calcium` parameters.
        """
        return self._merged("calcium_preprocess", dataset)

    @property
    def _connectome(self) -> dict[str, Any]:
        return self._calcium.get("connectome", {})

    def connectome_tensor(self, study: str | None = None) -> dict[str, Any]:
        """``build_connectome_tensor``: the affinity, the memory bound and how the animals are aligned.

        Parameters
        ----------
        study : str, optional
            A connectome study (its ``target_rate_hz``, ``rate_tolerance`` and ``match_by`` override the global
            ones); None: the global settings.

        Returns
        -------
        dict
            ``affinity`` (its name and parameters), ``memory_mb``, ``study``, ``target_rate_hz``,
            ``rate_tolerance`` and ``match_by``.
        """
        c = self._connectome
        entry = c.get("studies", {}).get(study, {}) if study is not None else {}
        aligned = {k: copy.deepcopy(entry.get(k, c.get(k))) for k in CONNECTOME_ALIGN_KEYS}
        return {
            "affinity": copy.deepcopy(c.get("affinity", {})),
            "memory_mb": c.get("memory_mb"),
            "study": study,
            **aligned,
        }

    def connectome(self, study: str) -> dict[str, Any]:
        """``fit_connectome``: ``connectome.model`` <- ``connectome.studies.<study>.model``.

        %(connectome_study_parameters)s

        Returns
        -------
        dict
            The :class:`~brainpipe.models.DynamicConnectome` hyperparameters.
        """
        return self._merged("connectome", study)

    def connectome_evaluate(self, study: str) -> dict[str, Any]:
        """``evaluate_connectome``: bars (global <- study's) and the study name.

        %(connectome_study_parameters)s

        Returns
        -------
        dict
            ``bars`` and ``study``.
        """
        c = self._connectome
        return {"bars": merged(c.get("bars"), c["studies"][study].get("bars")), "study": study}

    # -- Neuroformer ------------------------------------------------------------------------------------------------
    @property
    def _nf(self) -> dict[str, Any]:
        return self.config.get("neuroformer", {})

    def neuroformer(self, dataset: str) -> dict[str, Any]:
        """The dataset's whole Neuroformer config: every section merged with the dataset's own.

        %(neuroformer_dataset_parameters)s

        Returns
        -------
        dict
            ``tokenizer``, ``model``, ``pretrain``, ``finetune``, ``evaluate``, ``bars``, ``modalities``, ``target``,
            ``seed`` and ``dataset``.
        """
        nf = self._nf
        entry = nf["datasets"][dataset]
        out = {k: merged(nf.get(k), entry.get(k)) for k in NF_SECTIONS}
        out["modalities"] = {
            m: copy.deepcopy(nf.get("modalities", {})[m]) for m in entry.get("modalities", [])
        }
        out["target"] = copy.deepcopy(entry.get("target"))
        out["seed"] = nf.get("seed", 0)
        out["dataset"] = dataset
        return out

    def neuroformer_pretrain(self, dataset: str) -> dict[str, Any]:
        """``neuroformer_pretrain``: tokenizer, model, pretrain, modalities, seed.

        %(neuroformer_dataset_parameters)s

        Returns
        -------
        dict
            ``tokenizer``, ``model``, ``pretrain``, ``modalities`` and ``seed`` (and ``target`` where
            ``model.contrastive_select`` is ``decoding``: the contrastive weight is chosen by decoding it).
        """
        nf = self.neuroformer(dataset)
        keys = ("tokenizer", "model", "pretrain", "modalities", "seed")
        if nf["model"].get("contrastive_select") == "decoding":
            keys += ("target",)
        return _pick(nf, keys)

    def neuroformer_finetune(self, dataset: str) -> dict[str, Any]:
        """``neuroformer_finetune``: finetune, target, seed, dataset.

        %(neuroformer_dataset_parameters)s

        Returns
        -------
        dict
            ``finetune``, ``target``, ``seed`` and ``dataset``.
        """
        return _pick(self.neuroformer(dataset), ("finetune", "target", "seed", "dataset"))

    def neuroformer_evaluate(self, dataset: str) -> dict[str, Any]:
        """``neuroformer_evaluate``: evaluate, bars, seed, dataset, pretrain (its device).

        %(neuroformer_dataset_parameters)s

        Returns
        -------
        dict
            ``evaluate``, ``bars``, ``seed``, ``dataset`` and ``pretrain``.
        """
        return _pick(self.neuroformer(dataset), ("evaluate", "bars", "seed", "dataset", "pretrain"))

    # -- where each value comes from ----------------------------------------------------------------------------------
    def _get(self, key: str) -> Any:
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def where(self, step: str, *names: str) -> dict[str, str]:
        """Each parameter of a step -> the full config key its value comes from (the last layer that sets it).

        Parameters
        ----------
        step : str
            One of ``bin``, ``switching``, ``fmri_clean``, ``brainmae``, ``calcium_preprocess``, ``connectome``.
        *names : str
            The dataset (and variant) or study, as for the step's method.

        Returns
        -------
        dict
            Dotted parameter path (e.g. ``"split.n_blocks"``) -> config key (e.g.
            ``"spikes.datasets.nelpy.bin.split.n_blocks"``). The workflow passes it to the stage, so that an error
            about a value names the key to change.
        """
        out: dict[str, str] = {}

        def walk(node: Any, prefix: str, key: str) -> None:
            if isinstance(node, Mapping) and node:
                for k, v in node.items():
                    walk(v, f"{prefix}{k}.", f"{key}.{k}")
            elif prefix:
                out[prefix[:-1]] = key

        for layer in self._layers(step, *names):
            walk(self._get(layer), "", layer)
        return out

    def _layers(self, step: str, *names: str) -> list[str]:
        return [t.format(*names) for t in LAYERS[step]]

    def _merged(self, step: str, *names: str) -> dict[str, Any]:
        """The step's parameters: its layers (:data:`LAYERS`) deep-merged, later ones winning."""
        out: dict[str, Any] = {}
        for layer in self._layers(step, *names):
            out = merged(out, self._get(layer))
        return out

    # -- every cross-check, on the resolved parameters --------------------------------------------------------------
    def _fail(self, key: str, err: Exception | str) -> ConfigError:
        msg = str(err)
        return ConfigError(f"{self.source}: key '{key}': {msg}")

    def check(self) -> None:
        """Check the parameters of every step the workflow will run (one-line :class:`ConfigError`).

        Each (dataset, variant) pair is resolved and checked by the code that will use it: the split fractions of
        each dataset's binning sum to 1; each switching-GLM, BrainMAE, Neuroformer and connectome configuration
        passes its estimator's own hyperparameter check. The key named is where the dataset's own value lives when
        it overrides the global one.
        """
        for name in self.spike_datasets():
            p = self.bin(name)
            fr = p.get("split", {}).get("fractions")
            if fr and abs(sum(fr.values()) - 1.0) > 1e-6:
                own = "fractions" in self.spike_datasets()[name].get("bin", {}).get("split", {})
                key = f"spikes.datasets.{name}.bin.split.fractions" if own else "spikes.bin.split.fractions"
                raise self._fail(key, f"{fr} sums to {sum(fr.values()):.4g} (allowed: sum of 1)")
        self._check_switching()
        self._check_brainmae()
        self._check_neuroformer()
        self._check_connectome()

    def _check_switching(self) -> None:
        from brainpipe.models import SwitchingGLM

        sw = self._switching
        if not sw.get("enabled", True):
            return
        for name in sw.get("datasets", {}):
            if name not in self.spike_datasets():
                continue  # reported by validate_config
            for v in self.switching_variants(name):
                if v not in sw.get("variants", {}):
                    continue
                own = "model" in sw["datasets"][name]
                key = (
                    f"spikes.switching_glm.datasets.{name}.model"
                    if own
                    else f"spikes.switching_glm.variants.{v}"
                )
                params = self.switching(name, v)
                grid = params.pop("select", None) or {}  # validation-chosen candidates: each one checked
                self._check_estimator(SwitchingGLM, params, key)
                for k, values in grid.items():
                    for value in values:
                        self._check_estimator(SwitchingGLM, dict(params, **{k: value}), f"{key}.select.{k}")

    def _check_brainmae(self) -> None:
        from brainpipe.models.brainmae import split_kwargs

        bm = self._fmri.get("brainmae", {})
        for name, entry in bm.get("datasets", {}).items():
            for v in self.brainmae_variants(name):
                if v not in bm.get("variants", {}):
                    continue
                key = (
                    f"fmri.brainmae.datasets.{name}.model"
                    if "model" in entry
                    else f"fmri.brainmae.variants.{v}"
                )
                try:
                    split_kwargs(self.brainmae(name, v))
                except ConfigError as err:
                    raise self._fail(key, err) from None

    def _check_neuroformer(self) -> None:
        nf = self._nf
        if not nf.get("enabled", True):
            return
        for name, entry in nf.get("datasets", {}).items():
            if name not in self.spike_datasets():
                continue
            p = self.neuroformer(name)
            own = [k for k in ("model", "pretrain", "finetune", "tokenizer") if k in entry]
            key = f"neuroformer.datasets.{name}" + (f".{own[0]}" if len(own) == 1 else "")
            try:
                from brainpipe.training.neuroformer import build_neuroformer

                build_neuroformer(p, with_target=bool(p.get("target")))._check_params()
            except ConfigError as err:
                raise self._fail(key, err) from None

    def _check_connectome(self) -> None:
        from brainpipe.models import DynamicConnectome

        c = self._connectome
        if not c.get("enabled", True):
            return
        for study, entry in c.get("studies", {}).items():
            key = (
                f"calcium.connectome.studies.{study}.model"
                if "model" in entry
                else "calcium.connectome.model"
            )
            self._check_estimator(DynamicConnectome, self.connectome(study), key)

    def _check_estimator(self, cls, params: dict[str, Any], key: str) -> None:
        import inspect

        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise self._fail(key, f"unknown parameter(s) {', '.join(unknown)} of {cls.__name__}")
        try:
            cls(**params)._check_params()
        except ConfigError as err:
            raise self._fail(key, err) from None


def _fill_method_docs(cls: type) -> type:
    """Fill the shared parameter texts (:mod:`brainpipe._docs`) in the docstrings of ``cls``'s methods."""
    from brainpipe._docs import fill_doc

    for member in vars(cls).values():
        if callable(member) and "%(" in (member.__doc__ or ""):
            fill_doc(member)
    return cls


_fill_method_docs(Study)
