"""config/README.md is generated from the schemas and the simulators (brainpipe.config._reference): the committed
file matches, every key it lists has a description, and the simulator tables list exactly each parameter class."""

from __future__ import annotations

import dataclasses

import pytest

from brainpipe.cli import main
from brainpipe.config import load_schema
from brainpipe.config._reference import (
    check_reference,
    docstring_parameters,
    iter_keys,
    missing_descriptions,
    reference_path,
    render_reference,
    simulator_table,
    type_text,
)
from brainpipe.simulate import GENERATORS


@pytest.fixture(scope="module")
def schema():
    return load_schema()


@pytest.fixture(scope="module")
def text(schema):
    return render_reference(schema)


def test_committed_reference_is_generated(text):
    committed = reference_path().read_text(encoding="utf-8")
    assert committed == text, "config/README.md is out of date with the schemas: run `make config-docs`"


def test_config_docs_check_and_write(tmp_path, capsys):
    out = tmp_path / "README.md"
    out.write_text("# hand-edited\n")
    assert main(["config-docs", "--check", "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "make config-docs" in err and str(out) in err
    assert main(["config-docs", "--output", str(out)]) == 0
    assert main(["config-docs", "--check", "--output", str(out)]) == 0
    assert check_reference(out) is None


def test_type_and_default_columns_come_from_the_schema(schema):
    assert type_text({"type": "number", "exclusiveMinimum": 0, "maximum": 10}, schema) == "number in (0, 10]"
    assert type_text({"type": ["integer", "null"], "minimum": 1}, schema) == "integer >= 1 or null"
    assert type_text({"enum": ["auto", False]}, schema) == "`auto`, `false`"
    keys = {k.dotted: k for k in iter_keys(schema)}
    fractions = keys["spikes.bin.split.fractions.train"]  # a default given by the mapping above it
    assert (
        fractions.node["default"]
        == schema["properties"]["spikes"]["properties"]["bin"]["properties"]["split"]["properties"][
            "fractions"
        ]["default"]["train"]
    )
    row = next(line for line in render_reference(schema).splitlines() if "`spikes.bin.bin_width_s`" in line)
    assert "number in (0, 10]" in row and "`0.01`" in row


def test_every_listed_key_has_a_description(schema):
    missing = missing_descriptions(schema)
    assert not missing, (
        f"{len(missing)} config key(s) without a description in workflow/schemas/*.schema.yaml: "
        f"{', '.join(missing)}; add one (then run `make config-docs`)"
    )


def test_parameters_of_gives_code_defaults_and_descriptions(schema):
    keys = {k.dotted: k for k in iter_keys(schema)}
    lr = keys["fmri.brainmae.model.lr"].node  # x-parameters-of: brainpipe.models.BrainMAE
    assert lr["default"] == 2e-3 and lr["description"]
    assert (
        keys["neuroformer.pretrain.max_epochs"].node["default"] == 8
    )  # the schema's default wins over the code's


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_simulator_table_lists_exactly_its_parameters(name, text):
    cls = GENERATORS[name].params_cls
    fields = [f.name for f in dataclasses.fields(cls)]
    documented = [n for names, _ in docstring_parameters(cls) for n in names]
    assert documented == fields, (
        f"{cls.__name__}: the Parameters section of its docstring must document its fields in order "
        f"(missing: {sorted(set(fields) - set(documented))}, extra: {sorted(set(documented) - set(fields))})"
    )
    table = simulator_table(name)
    assert table in text
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    listed = [n.strip(" `") for line in rows for n in line.split(" | ")[0].removeprefix("| ").split(",")]
    assert listed == fields
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    first = rows[0].split(" | ")
    assert first[2].replace("`", "") == ", ".join(
        str(defaults[n]) for n in listed[: first[0].count("`") // 2]
    )
