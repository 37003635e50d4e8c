"""The study file written from a scan (:func:`study_yaml`) and its completeness check (:func:`check_study`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brainpipe.errors import ConfigError
from brainpipe.scan._found import _BEHAVIOUR_PREF, _STIMULUS_PREF, FoundDataset
from brainpipe.scan._walk import _schema_has, _study_name


# ---- the study file ----------------------------------------------------------------------------------------------------
def _yaml(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _path_text(p: Path, relative: bool) -> str:
    return str(p) if relative or p.is_absolute() else str(p.resolve())


def _entry(f: FoundDataset, relative: bool, indent: str) -> list[str]:
    """The YAML lines of one dataset entry (its keys, then its open questions as commented lines)."""
    lines = [f"{indent}{f.name}:" + (f"   # {f.format}: {f.summary}" if f.summary else f"   # {f.format}")]
    keys: dict[str, Any] = {"path": _path_text(f.path, relative), "format": f.format, **f.keys}
    if f.modality == "calcium" and f.facts.get("kind") and _schema_has("calcium", "datasets", "*", "kind"):
        keys["kind"] = f.facts["kind"]
    for k, v in keys.items():
        if k in ("atlas", "atlas_labels", "participants"):
            v = _path_text(Path(v), relative)
        if k == "options":
            v = {o: _path_text(Path(x), relative) if o == "position" else x for o, x in v.items()}
        lines.append(f"{indent}  {k}: {_yaml(v)}")
    for q in f.questions:
        if q.full_key or (q.key == "kind" and not _schema_has("calcium", "datasets", "*", "kind")):
            continue
        head, _, sub = q.key.partition(".")
        text = f"{{{sub}: {q.placeholder}}}" if sub else q.placeholder
        lines.append(f"{indent}  # {head}: {text}  # could not determine: {q.hint}")
    lines += [f"{indent}  # {n}" for n in f.notes]
    return lines


def _spike_target(f: FoundDataset) -> tuple[dict[str, Any] | None, list[str]]:
    beh, stim = f.facts.get("behaviour", []), f.facts.get("stimulus", [])
    if beh:
        var = next((b for p in _BEHAVIOUR_PREF for b in beh if b.lower() == p), beh[0])
        return {"source": "behaviour", "variable": var}, [b for b in beh if b != var]
    values = f.facts.get("stimulus_values", {})
    discrete = [s for s in stim if 2 <= values.get(s, 0) <= 10]
    if discrete:
        var = next((s for p in _STIMULUS_PREF for s in discrete if s.lower() == p), discrete[0])
        return {"source": "stimulus", "variable": var, "kind": "classification"}, [
            s for s in stim if s != var
        ]
    return None, stim


def study_yaml(found: Sequence[FoundDataset], name: str = "my-study", sources: Sequence[str] = ()) -> str:
    """The commented study file for the datasets found by :func:`scan`.

    Parameters
    ----------
    found : sequence of FoundDataset
        The datasets (named), e.g. a :class:`Scan`.
    name : str
        The study name (``study.name``; letters, digits, ``_ . -``).
    sources : sequence of str
        The paths that were scanned, for the header comment (default: ``found.roots`` of a :class:`Scan`).

    Returns
    -------
    str
        YAML text: every dataset with what its files say as comments, the models that fit it enabled, and a
        commented placeholder line for each key that could not be determined.
    """
    from brainpipe import __version__

    sources = list(sources) or [str(r) for r in getattr(found, "roots", [])]
    relative = Path("Snakefile").is_file()  # run from the checkout: paths as given; elsewhere: absolute
    by = {m: [f for f in found if f.modality == m] for m in ("spikes", "calcium", "fmri")}
    undecided = [f for f in found if f.modality is None]
    counts = ", ".join(f"{len(v)} {m}" for m, v in by.items() if v) or "no"
    where = ", ".join(sources) or "the given folders"
    description = f"Written by brainpipe init from {where}: {counts} dataset(s)."
    out = [
        f"# brainpipe study written by `brainpipe init {' '.join(sources)}` (brainpipe {__version__}).",
        "# Every key is documented in config/README.md. Check it: `brainpipe check-config THIS_FILE`;",
        "# run it: `snakemake --configfile THIS_FILE` from the brainpipe folder.",
        "# A line `# key: <...>  # could not determine: ...` is a value the files did not say: set it and",
        "# remove the leading '# '. Paths are "
        + ("as given (relative to this folder)." if relative else "absolute."),
    ]
    skipped = getattr(found, "skipped", [])
    if skipped:
        out.append(f"# Skipped {len(skipped)} path(s):")
        out += [f"#   {p} ({r})" for p, r in skipped[:40]]
        if len(skipped) > 40:
            out.append(f"#   ... and {len(skipped) - 40} more")
    out += [
        "study:",
        f"  name: {_yaml(name)}",
        f"  description: {_yaml(description)}",
        "",
    ]
    if by["spikes"]:
        out += ["spikes:", "  datasets:"]
        for f in by["spikes"]:
            out += _entry(f, relative, "    ")
            if f.facts.get("bin_width_s"):
                out.append(f"    {'':2}bin: {{bin_width_s: {f.facts['bin_width_s']:g}}}   # the file's bins")
            if f.facts.get("units", 0) > 50:
                out.append(
                    f"      # bin: {{qc: {{max_units: 30}}}}  # {f.facts['units']} units: the switching GLM's cost "
                    "grows with units^2; keep the most active ones to start"
                )
        out += [
            "  poisson_glm:",
            "    enabled: true        # a coupled Poisson GLM on every spike dataset (the baseline)",
            "  switching_glm:",
            "    enabled: true        # HMM-GLMs: one state vs no prior vs a Gaussian prior around a shared connectome",
            "    datasets:",
        ]
        out += [f"      {f.name}: {{variants: [single, none, gaussian]}}" for f in by["spikes"]]
        out.append("")
        decoded = [(f, *_spike_target(f)) for f in by["spikes"]]
        decoded = [d for d in decoded if d[1] is not None]
        out += [
            "neuroformer:",
            f"  enabled: {'true' if decoded else 'false'}"
            + ("" if decoded else "   # no behaviour or trial variable to decode"),
            "  datasets:" if decoded else "  datasets: {}",
        ]
        for f, target, others in decoded:
            out.append(f"    {f.name}:")
            out.append(
                f"      target: {_yaml(target)}"
                + (f"   # also in the file: {', '.join(others)}" if others else "")
            )
        out.append("")
    if by["calcium"]:
        from brainpipe.config import section_defaults

        window = section_defaults("calcium.preprocess")["baseline"]["window_s"]
        out += ["calcium:", "  datasets:"]
        for f in by["calcium"]:
            out += _entry(f, relative, "    ")
            duration = f.facts.get("duration_s")
            if duration is not None and duration < 2 * window:
                out.append(
                    f"      preprocess: {{baseline: {{window_s: {max(round(duration / 4, 1), 0.1):g}}}}}   # a "
                    f"{duration:.0f} s recording: the default {window:g} s running baseline does not fit"
                )
        out += ["  connectome:", "    enabled: true", "    studies:"]
        groups: dict[str, list[FoundDataset]] = {}
        for f in by["calcium"]:
            groups.setdefault(f.group or "", []).append(f)
        used: set[str] = set()
        for folder, members in groups.items():
            study = _study_name(folder)
            while study in used:
                study += "_2"
            used.add(study)
            out.append(
                f"      {study}:" + f"   # {len(members)} animal{'s' if len(members) > 1 else ''} in {folder}"
            )
            out.append(f"        datasets: {_yaml([f.name for f in members])}")
            for q in (q for f in members for q in f.questions if q.full_key):
                out.append(f"        # {q.key}: {q.placeholder}  # could not determine: {q.hint}")
        out.append("")
    if by["fmri"]:
        out += ["fmri:", "  datasets:"]
        for f in by["fmri"]:
            out += _entry(f, relative, "    ")
        out += [
            "  brainmae:",
            "    enabled: true         # masked-ROI pretraining; probe and fine-tuning on the participants' labels",
        ]
        out.append("")
    if undecided:
        out.append(
            "# Undecided: the content fits several readers; move each entry under the branch it belongs to."
        )
        for f in undecided:
            choices = " or ".join(f"{m}.datasets with format: {fmt}" for m, fmt in f.choices)
            out.append(
                f"#   {f.name}: {{path: {_path_text(f.path, relative)}}}   # could not determine: {choices}"
            )
        out.append("")
    out += ["report:", f"  title: {_yaml(f'{name} (brainpipe init)')}", ""]
    return "\n".join(out)


def check_study(text: str, source: str = "study") -> list[str]:
    """What keeps a written study from running: its schema/cross-check error, if any.

    Parameters
    ----------
    text : str
        The study YAML (:func:`study_yaml`).
    source : str
        How to name the study in the message (its file name).

    Returns
    -------
    list of str
        Empty when the study validates (:func:`brainpipe.config.validate_config`); else its one-line error.
    """
    import yaml

    from brainpipe.config import validate_config

    try:
        validate_config(yaml.safe_load(text), source=source)
    except ConfigError as err:
        return [str(err)]
    return []
