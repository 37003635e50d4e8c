"""Study configuration: JSON-Schema validation with defaults, and one-line errors naming the key.

The schema is ``workflow/schemas/config.schema.yaml``; Snakemake's ``common.smk`` calls
:func:`validate_config`, and so can Python code. Besides the schema, this checks what a schema cannot:
simulator parameters (against the simulator's own parameter list) and that every ``path`` exists.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from brainpipe.errors import ConfigError

DEFAULT_SCHEMA = Path("workflow") / "schemas" / "config.schema.yaml"
# the repository's schema, for code run from another folder (the package is installed from the repository)
_REPO_SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


def schema_path() -> Path:
    """The study schema: ``workflow/schemas/config.schema.yaml`` in the current folder, else the repository's.

    Returns
    -------
    pathlib.Path
        The schema file.
    """
    return DEFAULT_SCHEMA if DEFAULT_SCHEMA.exists() else _REPO_SCHEMA


def section_defaults(section: str, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The defaults the schema gives the keys of one section (e.g. ``"spikes.bin"``), nested.

    Parameters
    ----------
    section : str
        Dotted key of a section of the study config.
    schema : mapping, optional
        The merged study schema (default: :func:`load_schema`).

    Returns
    -------
    dict
        The section as an empty study gets it after validation (``{}`` for a section without defaults).
    """
    sch = dict(schema) if schema is not None else load_schema()
    node: Any = sch
    for part in section.split("."):
        while isinstance(node, Mapping) and "$ref" in node:
            node = sch["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        node = node.get("properties", {}).get(part) if isinstance(node, Mapping) else None
        if node is None:
            raise KeyError(f"no section {section!r} in the study schema")
    out: dict[str, Any] = {}
    defaulting = _Validator({"$defs": sch.get("$defs", {}), **dict(node)})
    for _ in defaulting.iter_errors(out):  # filling defaults is a side effect of validation
        pass
    return out


PATH_OPTIONS = ("position",)  # reader options that name files (checked like 'path', and tracked as inputs)


def _with_defaults(cls):
    validate_props = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def load_schema(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Load the study schema and merge in the branch schemas beside it.

    Each ``<branch>.schema.yaml`` next to ``config.schema.yaml`` describes the top-level key ``<branch>`` (e.g.
    ``calcium.schema.yaml`` -> ``calcium:``); its ``$defs`` join the root's (so ``#/$defs/...`` references work).

    Parameters
    ----------
    path : str or os.PathLike, optional
        The schema file (default: :func:`schema_path`); branch schemas are merged only into a
        ``config.schema.yaml``.

    Returns
    -------
    dict
        The merged JSON Schema.

    Raises
    ------
    brainpipe.errors.ConfigError
        A branch schema defines a name the root already has.
    """
    p = Path(str(path)) if path else schema_path()
    with open(p) as fh:
        schema = yaml.safe_load(fh)
    if p.name != "config.schema.yaml":
        return schema
    for part in sorted(p.parent.glob("*.schema.yaml")):
        if part.name == p.name:
            continue
        branch = part.name[: -len(".schema.yaml")]
        with open(part) as fh:
            sub = yaml.safe_load(fh) or {}
        defs = sub.pop("$defs", {})
        clash = (set(defs) & set(schema.setdefault("$defs", {}))) | ({branch} & set(schema["properties"]))
        if clash:
            raise ConfigError(
                f"{part}: defines {', '.join(sorted(clash))} again; rename it in one of the schemas"
            )
        schema["$defs"].update(defs)
        sub.pop("$schema", None)
        schema["properties"][branch] = sub
    return schema


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _allowed(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "allowed values: " + ", ".join(map(str, schema["enum"]))
    parts = []
    t = schema.get("type")
    if t:
        parts.append(" or ".join(t) if isinstance(t, list) else str(t))
    for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if k in schema:
            parts.append(f"{op} {schema[k]}")
    if "pattern" in schema:
        parts.append(f"matching {schema['pattern']}")
    if "oneOf" in schema:
        parts.append(" or ".join(_allowed(s) for s in schema["oneOf"]))
    return "allowed: " + (" ".join(parts) if parts else "see config/README.md")


def _message(err: jsonschema.ValidationError) -> str:
    key = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        bad = extra[0] if extra else "?"
        where = f"{key}.{bad}" if err.absolute_path else bad
        hint = difflib.get_close_matches(bad, allowed, n=1)
        tip = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"unknown key '{where}' (allowed keys here: {', '.join(allowed) or 'none'}){tip}"
    if err.validator == "propertyNames":
        return f"key '{key}.{err.instance}' is not a valid name ({_allowed(err.schema)})"
    if err.validator == "required":
        req = ", ".join(err.schema.get("required", []))
        return f"key '{key}' needs {err.message.split(' is a required')[0]} (required keys: {req})"
    if err.validator in ("enum",):
        return f"key '{key}': {err.instance!r} is not allowed ({_allowed(err.schema)})"
    if err.validator in ("oneOf", "anyOf") and err.schema.get("oneOf"):
        return f"key '{key}': {err.instance!r} is not valid ({_allowed(err.schema)})"
    hint = ""
    if isinstance(err.instance, str) and _numeric_text(err.instance):
        from brainpipe.simulate.base import YAML_NUMBER_HINT

        hint = f"; {YAML_NUMBER_HINT}"
    return f"key '{key}': {err.instance!r} is invalid ({_allowed(err.schema)}){hint}"


def _numeric_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def validate_config(
    config: Mapping[str, Any],
    schema: str | os.PathLike | Mapping[str, Any] | None = None,
    source: str = "config",
    base_dir: str | os.PathLike = ".",
    check_paths: bool = True,
) -> dict[str, Any]:
    """Validate a study config and return a copy with every default filled in.

    Besides the schema, it checks what a schema cannot express: simulator parameters, paths, names that refer to
    each other, and every step's resolved parameters (through :class:`~brainpipe.config.Study`).

    Parameters
    ----------
    config : mapping
        The study config, as read from YAML.
    schema : str, os.PathLike or mapping, optional
        The schema file or the loaded schema (default: :func:`load_schema`).
    source : str, default "config"
        How to name the config in error messages (its file name).
    base_dir : str or os.PathLike, default "."
        Folder that relative data paths are taken from.
    check_paths : bool, default True
        Check that data paths exist.

    Returns
    -------
    dict
        A copy of ``config`` with every default filled in.

    Raises
    ------
    brainpipe.errors.ConfigError
        One line: ``<source>: <what key> <what is wrong> (allowed ...)``.
    """
    sch = schema if isinstance(schema, Mapping) else load_schema(schema)
    cfg = copy.deepcopy(dict(config or {}))
    validator = _Validator(sch)
    errors = sorted(
        validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if errors:
        err = errors[0]
        if err.context:  # oneOf/anyOf: report the most specific sub-error
            err = jsonschema.exceptions.best_match(err.context) or err
        raise ConfigError(f"{source}: {_message(err)}")
    _check_datasets(cfg, source, Path(base_dir), check_paths)
    _check_fmri(cfg, source, Path(base_dir), check_paths)
    _check_calcium(cfg, source, Path(base_dir), check_paths)
    from brainpipe.config._study import Study

    Study(cfg, source=source, check=True)  # every step's resolved parameters, overrides included
    return cfg


def _check_simulator(source: str, key: str, sim: Mapping[str, Any]) -> None:
    """Simulator parameters are checked against the generator's own parameter list."""
    from brainpipe.simulate import get_generator

    try:
        get_generator(sim["generator"]).parse_params(sim.get("params", {}))
    except ConfigError as err:
        raise ConfigError(f"{source}: key '{key}.simulate.params': {err}") from None


def _check_exists(source: str, key: str, value: str, base: Path) -> None:
    """A config path (relative to ``base`` unless absolute) must exist: one line naming the key otherwise."""
    p = Path(value)
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise ConfigError(
            f"{source}: key '{key}' points to '{value}', which does not exist "
            f"(looked in {p.parent.resolve()}); fix the path or remove the dataset"
        )


def _check_datasets(cfg: dict[str, Any], source: str, base: Path, check_paths: bool) -> None:

    for name, ds in cfg.get("spikes", {}).get("datasets", {}).items():
        key = f"spikes.datasets.{name}"
        if sum(k in ds for k in ("simulate", "path", "from_calcium")) != 1:
            raise ConfigError(
                f"{source}: key '{key}' needs exactly one of 'simulate', 'path' or 'from_calcium'"
            )
        if "from_calcium" in ds:
            continue  # checked with the calcium branch (_check_calcium)
        if "simulate" in ds and ({"format", "options"} & set(ds)):
            raise ConfigError(f"{source}: key '{key}': 'format' and 'options' go with 'path', not 'simulate'")
        if "simulate" in ds:
            _check_simulator(source, key, ds["simulate"])
        elif check_paths:
            paths = {f"{key}.path": ds["path"]}
            paths.update(
                {f"{key}.options.{k}": v for k, v in ds.get("options", {}).items() if k in PATH_OPTIONS}
            )
            for k, v in paths.items():
                _check_exists(source, k, v, base)
    _check_switching(cfg, source)
    _check_neuroformer(cfg, source)


def _check_switching(cfg: dict[str, Any], source: str) -> None:
    sw = cfg.get("spikes", {}).get("switching_glm", {})
    names = set(cfg.get("spikes", {}).get("datasets", {}))
    variants = set(sw.get("variants", {}))
    for ref in sw.get("references", []):
        if ref not in variants:
            raise ConfigError(
                f"{source}: key 'spikes.switching_glm.references': {ref!r} is not a variant "
                f"(allowed: {', '.join(sorted(variants))})"
            )
    for name, entry in sw.get("datasets", {}).items():
        key = f"spikes.switching_glm.datasets.{name}"
        if name not in names:
            raise ConfigError(
                f"{source}: key '{key}': no spike dataset named {name!r} (allowed: {', '.join(sorted(names))})"
            )
        for v in entry.get("variants", []):
            if v not in variants:
                raise ConfigError(
                    f"{source}: key '{key}.variants': {v!r} is not a variant (allowed: {', '.join(sorted(variants))})"
                )


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def _tables_have_tr(path: Path) -> bool:
    """Whether every ROI table at ``path`` has a JSON sidecar stating its TR (then no config TR is needed)."""
    from brainpipe.errors import InputError
    from brainpipe.io.fmri import find_tables, sidecar_tr

    try:
        return all(sidecar_tr(t)[0] is not None for t in find_tables(path))
    except InputError:  # a missing path or a bad file: reported by the path check or the ingest stage
        return False


def _check_fmri(cfg: dict[str, Any], source: str, base: Path, check_paths: bool) -> None:
    """fMRI cross-checks: one source per dataset, what each format needs, files exist, simulator parameters,
    BrainMAE variant and dataset names."""
    from brainpipe.models.brainmae import split_kwargs

    fm = cfg.get("fmri", {})
    for name, ds in fm.get("datasets", {}).items():
        key = f"fmri.datasets.{name}"
        if ("simulate" in ds) == ("path" in ds):
            raise ConfigError(f"{source}: key '{key}' needs exactly one of 'simulate' or 'path'")
        if "simulate" in ds:
            _check_simulator(source, key, ds["simulate"])
            continue
        fmt = ds.get("format", "auto")
        path = str(ds["path"])
        is_nifti = path.endswith((".nii", ".nii.gz"))
        if (fmt in ("fmriprep", "nifti") or (fmt == "auto" and is_nifti)) and "atlas" not in ds:
            raise ConfigError(
                f"{source}: key '{key}.atlas' is needed for format '{fmt}' (a 3D labels NIfTI in the bold images' space)"
            )
        if fmt == "table" and "repetition_time_s" not in ds and not _tables_have_tr(_resolve(path, base)):
            raise ConfigError(
                f"{source}: key '{key}.repetition_time_s' is needed for ROI tables (they carry no TR) without "
                "BIDS JSON sidecars (RepetitionTime)"
            )
        if check_paths:
            for k in ("path", "atlas", "atlas_labels", "participants"):
                if k in ds:
                    _check_exists(source, f"{key}.{k}", ds[k], base)
    bm = fm.get("brainmae", {})
    variants = set(bm.get("variants", {}))
    for vname, over in bm.get("variants", {}).items():
        try:
            split_kwargs({**bm.get("model", {}), **over})
        except ConfigError as err:
            raise ConfigError(f"{source}: key 'fmri.brainmae.variants.{vname}': {err}") from None
    names = set(fm.get("datasets", {}))
    for name, entry in bm.get("datasets", {}).items():
        key = f"fmri.brainmae.datasets.{name}"
        if name not in names:
            raise ConfigError(
                f"{source}: key '{key}': no fMRI dataset named {name!r} (allowed: {', '.join(sorted(names)) or 'none'})"
            )
        for v in entry.get("variants", []):
            if v not in variants:
                raise ConfigError(
                    f"{source}: key '{key}.variants': {v!r} is not a variant (allowed: {', '.join(sorted(variants))})"
                )
    for v in bm.get("finetune", {}).get("variants", []):
        if v not in variants:
            raise ConfigError(
                f"{source}: key 'fmri.brainmae.finetune.variants': {v!r} is not a variant (allowed: {', '.join(sorted(variants))})"
            )


def _check_neuroformer(cfg: dict[str, Any], source: str) -> None:
    """Neuroformer datasets must be spike datasets; their modalities must be defined; a decoding target must
    not also be an input modality (it would leak into the decoder); a contrastive grid chosen by decoding needs
    a target."""
    nf = cfg.get("neuroformer", {})
    names = set(cfg.get("spikes", {}).get("datasets", {}))
    mods = nf.get("modalities", {})
    for name, entry in nf.get("datasets", {}).items():
        key = f"neuroformer.datasets.{name}"
        if name not in names:
            raise ConfigError(
                f"{source}: key '{key}': no spike dataset named {name!r} (allowed: {', '.join(sorted(names)) or 'none'})"
            )
        for m in entry.get("modalities", []):
            if m not in mods:
                raise ConfigError(
                    f"{source}: key '{key}.modalities': unknown modality {m!r} "
                    f"(defined in neuroformer.modalities: {', '.join(sorted(mods)) or 'none'})"
                )
        t = entry.get("target")
        # with modality dropout the decoder has the target's modality absent (its values are never read)
        drop = (entry.get("model") or {}).get(
            "modality_dropout", (nf.get("model") or {}).get("modality_dropout", 0)
        )
        if t and not float(drop or 0) > 0:
            for m in entry.get("modalities", []):
                if mods[m]["source"] == t["source"] and t["variable"] in mods[m]["variables"]:
                    raise ConfigError(
                        f"{source}: key '{key}.target': {t['source']} variable {t['variable']!r} is also in input modality "
                        f"{m!r}, so the decoder would see its own target; remove it from the modality, pick another target "
                        "or set model.modality_dropout > 0 (the modality is then absent for the decoder)"
                    )
        if not t and entry.get("finetune"):
            raise ConfigError(
                f"{source}: key '{key}.finetune' is set but the dataset has no 'target' to fine-tune on"
            )
        model = {**(nf.get("model") or {}), **(entry.get("model") or {})}
        grid = {float(w) for w in model.get("contrastive_grid") or []}
        if (
            not t
            and model.get("contrastive_select") == "decoding"
            and len(grid) > 1
            and entry.get("modalities")
        ):
            raise ConfigError(
                f"{source}: key '{key}': model.contrastive_select is decoding, which chooses the contrastive weight "
                "by decoding the dataset's target, but the dataset has no 'target'; give one or use next_token"
            )


def load_config(path: str | os.PathLike, schema: str | os.PathLike | None = None, **kw) -> dict[str, Any]:
    """Read a YAML config file and validate it (see :func:`validate_config`).

    Parameters
    ----------
    path : str or os.PathLike
        The YAML file.
    schema : str or os.PathLike, optional
        The schema file (default: :func:`load_schema`).
    **kw
        ``base_dir`` and ``check_paths``, passed to :func:`validate_config`.

    Returns
    -------
    dict
        The validated config, defaults filled in.

    Raises
    ------
    brainpipe.errors.ConfigError
        The file cannot be read, is not YAML or not a mapping, or the config is not valid.
    """
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    return validate_config(data, schema, source=str(path), **kw)


def _check_calcium(cfg: dict[str, Any], source: str, base: Path, check_paths: bool) -> None:
    """Calcium branch cross-checks: one source per dataset, simulator parameters, paths, study members, and the
    spike datasets made from calcium events."""

    ca = cfg.get("calcium", {})
    names = set(ca.get("datasets", {}))
    for name, ds in ca.get("datasets", {}).items():
        key = f"calcium.datasets.{name}"
        if ("simulate" in ds) == ("path" in ds):
            raise ConfigError(f"{source}: key '{key}' needs exactly one of 'simulate' or 'path'")
        if "simulate" in ds:
            if {"format", "options", "frame_rate_hz"} & set(ds):
                raise ConfigError(
                    f"{source}: key '{key}': 'format', 'options' and 'frame_rate_hz' go with 'path', not 'simulate'"
                )
            _check_simulator(source, key, ds["simulate"])
        elif check_paths:
            _check_exists(source, f"{key}.path", ds["path"], base)
    for study, entry in ca.get("connectome", {}).get("studies", {}).items():
        for d in entry["datasets"]:
            if d not in names:
                raise ConfigError(
                    f"{source}: key 'calcium.connectome.studies.{study}.datasets': no calcium dataset named {d!r} "
                    f"(allowed: {', '.join(sorted(names)) or 'none defined'})"
                )
        if len(set(entry["datasets"])) != len(entry["datasets"]):
            raise ConfigError(
                f"{source}: key 'calcium.connectome.studies.{study}.datasets' lists a dataset twice"
            )
    for name, ds in cfg.get("spikes", {}).get("datasets", {}).items():
        if "from_calcium" in ds:
            if ds["from_calcium"] not in names:
                raise ConfigError(
                    f"{source}: key 'spikes.datasets.{name}.from_calcium': no calcium dataset named "
                    f"{ds['from_calcium']!r} (allowed: {', '.join(sorted(names)) or 'none defined'})"
                )
            if {"format", "options", "t_start_s", "t_stop_s"} & set(ds):
                raise ConfigError(
                    f"{source}: key 'spikes.datasets.{name}': 'format', 'options', 't_start_s' and 't_stop_s' go with 'path', not 'from_calcium'"
                )
