"""A study config file read, validated and resolved into a :class:`brainpipe.config.Study` (:func:`load_study`)."""

from __future__ import annotations

import os
from pathlib import Path

from brainpipe.config._study import Study


def load_study(
    path: str | os.PathLike,
    schema: str | os.PathLike | None = None,
    base_dir: str | os.PathLike | None = None,
    check_paths: bool = True,
) -> Study:
    """Read, validate and resolve a study config file.

    Parameters
    ----------
    path : str or path-like
        The study's YAML file.
    schema : str or path-like, optional
        The study schema (default: the repository's ``workflow/schemas/config.schema.yaml``).
    base_dir : str or path-like, optional
        Folder that relative data paths are taken from (default: the current folder).
    check_paths : bool, default True
        Check that data paths exist.

    Returns
    -------
    Study
        The study, every cross-check run.

    Raises
    ------
    brainpipe.errors.ConfigError
        The file cannot be read or the config is not valid (one line naming the key).

    Examples
    --------
    From the repository's folder:

    >>> from brainpipe.config import load_study
    >>> study = load_study("config/config.yaml", check_paths=False)  # doctest: +SKIP
    >>> study.bin("steinmetz1")["bin_width_s"]  # doctest: +SKIP
    0.01
    >>> study.switching_variants("simswitch")  # doctest: +SKIP
    ['gaussian', 'none', 'onehot', 'single']
    """
    from brainpipe.config._validate import load_config

    cfg = load_config(path, schema, base_dir=base_dir or Path("."), check_paths=check_paths)
    return Study(cfg, source=str(path))
