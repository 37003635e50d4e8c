"""Study configuration: validated once against the JSON Schema (defaults filled in, one-line errors naming the key),
then resolved into per-step parameters by :class:`Study`, on which every cross-check runs.

- :func:`validate_config` / :func:`load_config`: the schema (``workflow/schemas/*.schema.yaml``) and the checks a
  schema cannot express (simulator parameters, paths, names that refer to each other, and every step's resolved
  parameters through :class:`Study`).
- :class:`Study` / :func:`load_study`: the parameters each step of the workflow gets (global keys deep-merged with
  the dataset's, variant's or study's overrides). The Snakemake rules call it.
- :func:`section_defaults`: the schema's defaults of one section (what a stage called from Python gets for the
  parameters it is not given).
"""

from brainpipe.config._keys import FMRI_FILE_KEYS, FMRI_READER_KEYS, merged
from brainpipe.config._load import load_study
from brainpipe.config._study import Study
from brainpipe.config._validate import (
    DEFAULT_SCHEMA,
    PATH_OPTIONS,
    load_config,
    load_schema,
    schema_path,
    section_defaults,
    validate_config,
)

__all__ = [
    "DEFAULT_SCHEMA",
    "FMRI_FILE_KEYS",
    "FMRI_READER_KEYS",
    "PATH_OPTIONS",
    "Study",
    "load_config",
    "load_schema",
    "load_study",
    "merged",
    "schema_path",
    "section_defaults",
    "validate_config",
]
