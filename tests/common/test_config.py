"""The study schema: branch schemas beside config.schema.yaml are merged in under their branch's key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from brainpipe.config import load_schema, validate_config
from brainpipe.errors import ConfigError

SCHEMAS = Path(__file__).parents[2] / "workflow" / "schemas"


@pytest.fixture
def schema_dir(tmp_path):
    shutil.copy(SCHEMAS / "config.schema.yaml", tmp_path / "config.schema.yaml")
    return tmp_path


def test_branch_schema_is_merged_with_its_defs(schema_dir):
    branch = {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "properties": {"thing": {"$ref": "#/$defs/thing_def"}},
        "$defs": {"thing_def": {"type": "integer", "minimum": 1, "default": 3}},
    }
    (schema_dir / "extra.schema.yaml").write_text(yaml.safe_dump(branch))
    schema = load_schema(schema_dir / "config.schema.yaml")
    assert "extra" in schema["properties"] and "thing_def" in schema["$defs"]
    cfg = validate_config({"extra": {"thing": 5}}, schema, check_paths=False)
    assert cfg["extra"]["thing"] == 5 and "spikes" in cfg
    with pytest.raises(ConfigError, match=r"extra\.thing"):
        validate_config({"extra": {"thing": 0}}, schema, check_paths=False)


def test_branch_schema_clash_is_one_line(schema_dir):
    (schema_dir / "spikes.schema.yaml").write_text(yaml.safe_dump({"type": "object"}))
    with pytest.raises(ConfigError, match="spikes.schema.yaml: defines spikes again"):
        load_schema(schema_dir / "config.schema.yaml")


def test_shipped_schema_loads_every_branch():
    schema = load_schema(SCHEMAS / "config.schema.yaml")
    branches = {p.name[: -len(".schema.yaml")] for p in SCHEMAS.glob("*.schema.yaml")} - {"config"}
    assert branches <= set(schema["properties"])


# -- the study resolved once into per-step parameters -----------------------------------------------------------
REPO = Path(__file__).parents[2]


def _default_study() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _validate(cfg):
    return validate_config(cfg, SCHEMAS / "config.schema.yaml", source="study.yaml", base_dir=REPO)


def test_study_resolves_overrides_over_global_values():
    from brainpipe.config import Study, section_defaults

    cfg = _default_study()
    name = next(iter(cfg["spikes"]["switching_glm"]["datasets"]))
    cfg["spikes"]["switching_glm"]["datasets"][name]["model"] = {"link": "sigmoid", "l2": 0.5}
    cfg["spikes"]["datasets"]["nelpy"]["bin"] = {"bin_width_s": 0.025}
    study = Study(_validate(cfg))
    p = study.switching(name, "onehot")
    assert p["prior"] == "onehot" and p["l2"] == 0.5 and p["link"] == "sigmoid"  # model <- variant <- dataset
    assert (
        p["hessian_rows"] == section_defaults("spikes.switching_glm.model")["hessian_rows"]
    )  # the schema default
    b = study.bin("nelpy")
    assert b["bin_width_s"] == 0.025 and b["split"] == section_defaults("spikes.bin")["split"]
    assert study.bin("steinmetz1")["bin_width_s"] == cfg["spikes"]["bin"].get("bin_width_s", 0.01)


@pytest.mark.parametrize(
    "change, key",
    [
        (  # a per-dataset split that does not sum to 1 was only checked for the global value
            lambda c: c["spikes"]["datasets"]["nelpy"].__setitem__(
                "bin", {"split": {"fractions": {"train": 0.5, "validation": 0.3, "test": 0.3}}}
            ),
            "spikes.datasets.nelpy.bin.split.fractions': {'train': 0.5, 'validation': 0.3, 'test': 0.3} sums to 1.1",
        ),
        (  # a per-dataset model override the estimator refuses (d_model not divisible by n_heads)
            lambda c: c["fmri"]["brainmae"]["datasets"][
                next(iter(c["fmri"]["brainmae"]["datasets"]))
            ].__setitem__("model", {"n_heads": 5}),
            "fmri.brainmae.datasets.simcohort.model': BrainMAE: d_model must be >= 4 and divisible by n_heads",
        ),
        (  # a connectome study's dtype the estimator refuses
            lambda c: c["calcium"]["connectome"]["studies"][
                next(iter(c["calcium"]["connectome"]["studies"]))
            ].__setitem__("model", {"dtype": "float16"}),
            "calcium.connectome.studies.simcalcium.model': DynamicConnectome: dtype must be one of float32, float64",
        ),
    ],
    ids=["bin-override", "brainmae-override", "connectome-override"],
)
def test_bad_override_fails_at_config_time_naming_its_key(change, key):
    cfg = _default_study()
    change(cfg)
    with pytest.raises(ConfigError) as err:
        _validate(cfg)
    msg = str(err.value)
    assert msg.startswith("study.yaml: key '" + key) and "\n" not in msg, msg


# -- types and sizes, with the key named --------------------------------------------------------------------------
SIM_KEY = "spikes.datasets.simglm.simulate.params"


@pytest.mark.parametrize(
    "text, fragment",
    [
        (
            "n_neurons: 1e7",
            "parameter n_neurons must be a whole number (got '1e7'); YAML reads a number like 1e7",
        ),
        ("n_neurons: 2.5", "parameter n_neurons must be a whole number (got 2.5)"),
        ("duration_s: '60'", "parameter duration_s must be a number (got '60'); YAML reads"),
        ("n_neurons: 10000000", "need about"),
        ("n_neurons: 30000", "need about"),  # about 30 GiB: refused before anything is allocated
    ],
)
def test_simulator_types_and_sizes_are_checked_at_config_time(text, fragment, monkeypatch):
    monkeypatch.delenv("BRAINPIPE_MAX_MEMORY_FRACTION", raising=False)
    cfg = _default_study()
    cfg["spikes"]["datasets"]["simglm"]["simulate"]["params"].update(yaml.safe_load(text))
    with pytest.raises(ConfigError) as err:
        _validate(cfg)
    msg = str(err.value)
    assert (
        msg.startswith(f"study.yaml: key '{SIM_KEY}': simulator 'poisson_glm_network': ") and fragment in msg
    ), msg


def test_memory_budget_is_configurable(monkeypatch):
    from brainpipe.simulate import get_generator
    from brainpipe.simulate.base import memory_budget, total_memory

    gen = get_generator("poisson_glm_network")
    monkeypatch.setenv("BRAINPIPE_MAX_MEMORY_FRACTION", "1e-6")
    assert memory_budget() < total_memory() / 1e5
    with pytest.raises(ConfigError, match="lower n_neurons or raise BRAINPIPE_MAX_MEMORY_FRACTION"):
        gen.parse_params({})
    monkeypatch.setenv("BRAINPIPE_MAX_MEMORY_FRACTION", "2")
    with pytest.raises(ConfigError, match=r"BRAINPIPE_MAX_MEMORY_FRACTION='2' must be in \(0, 1\]"):
        gen.parse_params({})
    monkeypatch.delenv("BRAINPIPE_MAX_MEMORY_FRACTION")
    assert gen.parse_params({"n_neurons": 4.0}).n_neurons == 4.0  # a whole float is a whole number


def test_number_written_as_yaml_text_gets_the_hint():
    cfg = _default_study()
    cfg["spikes"]["switching_glm"]["model"]["tol"] = yaml.safe_load("tol: 1e-6")["tol"]
    with pytest.raises(
        ConfigError, match=r"key 'spikes.switching_glm.model.tol': '1e-6' is invalid .*write it with"
    ):
        _validate(cfg)


def test_stage_error_names_the_key_that_set_the_value(tmp_path):
    """A per-dataset bin width that leaves too few bins: the error names the dataset's own key."""
    from brainpipe.config import Study
    from brainpipe.data import make_provenance, write
    from brainpipe.simulate import simulate
    from brainpipe.stages import bin_spikes as bin_stage

    cfg = _default_study()
    cfg["spikes"]["datasets"]["nelpy"]["bin"] = {"bin_width_s": 5.0}
    study = Study(_validate(cfg))
    where = study.where("bin", "nelpy")
    assert where["bin_width_s"] == "spikes.datasets.nelpy.bin.bin_width_s"
    assert where["split.n_blocks"] == "spikes.bin.split.n_blocks"
    sim = simulate("poisson_glm_network", {"n_neurons": 3, "duration_s": 10.0}, seed=0)
    spikes = write(sim.data, tmp_path / "spikes.nc", "spike_times", make_provenance("test"))
    with pytest.raises(ConfigError) as err:
        bin_stage.run(
            {"spikes": spikes}, {"counts": tmp_path / "c.nc"}, {**study.bin("nelpy"), "where": where}
        )
    assert str(err.value).startswith(
        "key 'spikes.datasets.nelpy.bin.bin_width_s': bin_width_s=5.0 leaves 2 bins"
    )
    assert not (tmp_path / "c.nc").exists()


def test_where_names_a_key_for_every_parameter_of_every_step():
    from brainpipe.config import Study

    cfg = _default_study()
    study = Study(_validate(cfg))
    sw = next(iter(cfg["spikes"]["switching_glm"]["datasets"]))
    fm = next(iter(cfg["fmri"]["brainmae"]["datasets"]))
    ca = next(iter(cfg["calcium"]["datasets"]))
    st = next(iter(cfg["calcium"]["connectome"]["studies"]))
    cases = {
        ("switching", sw, "onehot"): study.switching(sw, "onehot"),
        ("fmri_clean", fm): study.fmri_clean(fm),
        ("brainmae", fm, "base"): study.brainmae(fm, "base"),
        ("calcium_preprocess", ca): study.calcium_preprocess(ca),
        ("connectome", st): study.connectome(st),
    }
    for (step, *names), params in cases.items():
        where = study.where(step, *names)
        leaves = {k.split(".")[0] for k in where}
        assert leaves >= {k for k, v in params.items() if k not in ("classification", "regression")}, step
        assert all(v.endswith(k) for k, v in where.items()), step
    assert study.where("switching", sw, "onehot")["prior"] == "spikes.switching_glm.variants.onehot.prior"


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_study_files_load(path):
    """Every study shipped in config/ (the default and the documented bigger or other runs) passes every check."""
    from brainpipe.config import load_study

    study = load_study(path, base_dir=REPO)
    assert study.spike_datasets() or study.config.get("calcium", {}).get("datasets")
