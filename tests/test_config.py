"""The study schema: branch schemas beside config.schema.yaml are merged in under their branch's key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from brainpipe.config import load_schema, validate_config
from brainpipe.errors import ConfigError

SCHEMAS = Path(__file__).parents[1] / "workflow" / "schemas"


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
