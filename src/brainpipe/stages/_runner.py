"""The one mechanism every stage goes through: logging, input checks, no partial outputs, one-line errors.

A stage module defines ``INPUTS`` and ``OUTPUTS`` (name -> description; an input description starting with
"optional" may be absent) and ``run(inputs, outputs, params, log)`` decorated with :func:`stage`. A stage whose
parameters are one section of the study config names it in ``CONFIG`` (e.g. ``"spikes.bin"``): parameters it is not
given take the schema's defaults of that section (the workflow passes them all, resolved by
:class:`brainpipe.config.Study`), so the stage reads them without fallback defaults of its own. It is then
callable three ways with the same behaviour: from Python, from Snakemake through a shim in
``workflow/scripts/`` (:func:`from_snakemake`), and as ``python -m brainpipe.stages.<name>`` (:func:`cli`).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

import brainpipe
from brainpipe.data.atomic import check_replaceable, identity, remove_if_new
from brainpipe.errors import BrainpipeError, ConfigError, InputError

PathLike = str | os.PathLike
Paths = Mapping[str, PathLike | list[PathLike] | None]


def _as_paths(value: Any) -> Path | list[Path] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [Path(v) for v in value]
    return Path(value)


def _flatten(value: Path | list[Path] | None) -> list[Path]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class _StageLog:
    """Route the 'brainpipe' logger (and warnings) to the stage's log file for the duration of a run."""

    def __init__(self, log: Path | None):
        self.log = log
        self.handler: logging.Handler | None = None

    def __enter__(self):
        logger = logging.getLogger("brainpipe")
        logger.setLevel(logging.INFO)
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self.handler = logging.FileHandler(self.log, mode="w")
            self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(self.handler)
            logging.captureWarnings(True)
            logging.getLogger("py.warnings").addHandler(self.handler)
        else:  # no log file: keep records off logging.lastResort (stderr), where the one error line goes
            self.handler = logging.NullHandler()
            logger.addHandler(self.handler)
        return logger

    def __exit__(self, *exc):
        if self.handler is not None:
            logging.getLogger("brainpipe").removeHandler(self.handler)
            logging.getLogger("py.warnings").removeHandler(self.handler)
            logging.captureWarnings(False)
            self.handler.close()


def stage(func: Callable[..., None]) -> Callable[..., None]:
    """Decorate a stage's ``run``: check inputs and outputs, log to ``log``, remove what it wrote if it fails.

    Before the stage runs, every input must exist and every output path must be free or hold this stage's own
    earlier output (:func:`brainpipe.data.atomic.check_replaceable`): a user's file or folder at an output path is
    refused with one line, and nothing is computed. When the stage fails, only the outputs it created or replaced
    in this run are removed; whatever was there before and was not replaced stays as it was.
    """
    module = sys.modules[func.__module__]
    name = _stage_name(module)

    @functools.wraps(func)
    def run(
        inputs: Paths, outputs: Paths, params: Mapping[str, Any] | None = None, log: PathLike | None = None
    ):
        params = _with_defaults(module, params)
        where = (
            params.pop(WHERE_KEY, None) or {}
        )  # parameter -> the config key that set it (from the workflow)
        ins = {k: _as_paths(v) for k, v in dict(inputs).items()}
        outs = {k: _as_paths(v) for k, v in dict(outputs).items()}
        log_path = Path(log) if log is not None else None
        with _StageLog(log_path) as logger:
            t0 = time.perf_counter()
            logger.info(
                "stage %s (brainpipe %s) params=%s",
                name,
                brainpipe.__version__,
                json.dumps(params, default=str),
            )
            before = {p: identity(p) for v in outs.values() for p in _flatten(v)}
            try:
                _check_paths(module, name, ins, outs)
                func(ins, outs, dict(params or {}), log_path)
            except BaseException as caught:
                err = _name_key(caught, where) if isinstance(caught, ConfigError) and where else caught
                # no output of this failed run is left behind (a stale file is never taken for a fresh one), and
                # nothing that was there before the run and was not replaced by it is touched
                for p, was in before.items():
                    remove_if_new(p, was)
                msg = str(err) if isinstance(err, BrainpipeError) else f"{type(err).__name__}: {err}"
                logger.error("stage %s failed: %s", name, msg, exc_info=not isinstance(err, BrainpipeError))
                if err is not caught:
                    raise err from None
                raise
            logger.info("stage %s done in %.2f s", name, time.perf_counter() - t0)

    run.__stage_name__ = name
    return run


WHERE_KEY = "where"  # a parameter the workflow adds: parameter path -> the study config key that set it


def _name_key(err: BrainpipeError, where: Mapping[str, str]) -> BrainpipeError:
    """The error again, led by the config key of the parameter it is about (the first one its message names)."""
    msg = str(err)
    for path, key in sorted(where.items(), key=lambda kv: -len(kv[0].rsplit(".", 1)[-1])):
        leaf = path.rsplit(".", 1)[-1]
        if re.search(rf"\b{re.escape(leaf)}\b", msg):
            return type(err)(f"key '{key}': {msg}")
    return err


def _with_defaults(module: Any, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` over the schema defaults of the stage's config section (``module.CONFIG``), if it has one."""
    section = getattr(module, "CONFIG", None)
    if section is None:
        return dict(params or {})
    from brainpipe.config import merged, section_defaults

    defaults = {k: v for k, v in section_defaults(section).items() if k != "enabled"}  # a workflow switch
    return merged(defaults, params)


def _check_paths(module: Any, name: str, ins: dict, outs: dict) -> None:
    declared_in, declared_out = getattr(module, "INPUTS", {}), getattr(module, "OUTPUTS", {})
    for k, desc in declared_in.items():
        if ins.get(k) in (None, []) and not desc.lower().startswith("optional"):
            raise InputError(f"stage {name}: input '{k}' ({desc}) was not given")
    for k in declared_out:
        if outs.get(k) is None:
            raise InputError(f"stage {name}: output '{k}' ({declared_out[k]}) was not given")
    for k, v in ins.items():
        for p in _flatten(v):
            if not p.exists():
                raise InputError(f"{p}: input '{k}' of stage {name} does not exist (check the path)")
    for k, v in outs.items():
        for p in _flatten(v):
            check_replaceable(p, name, what=f"output '{k}' of stage {name}")


def _stage_name(module: Any) -> str:
    spec = getattr(module, "__spec__", None)
    full = spec.name if spec is not None else module.__name__
    return full.rsplit(".", 1)[-1]


def _fail(msg: str) -> None:
    print(f"brainpipe: error: {msg}", file=sys.stderr)
    raise SystemExit(1)


def from_snakemake(smk: Any, module_name: str) -> None:
    """Entry for ``workflow/scripts/<stage>.py``: unpack the ``snakemake`` object and run the stage.

    Rules pass ``params: config=<their config subtree>, version=<brainpipe version>``. The version only serves
    Snakemake's params rerun trigger (a new brainpipe re-runs every stage); a mismatch with the installed
    package is logged.
    """
    import importlib

    if os.environ.get("SLURM_JOB_ID"):
        # HDF5's file locks fail or hang on NFS/Lustre; cluster profiles cannot set environment variables (the SLURM
        # executor forwards the submitting shell's), so a job running under SLURM turns them off unless told otherwise
        os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    module = importlib.import_module(f"brainpipe.stages.{module_name}")
    ins = {k: smk.input[k] for k in module.INPUTS if hasattr(smk.input, k)}
    ins.update({k: smk.input[k] for k in smk.input.keys() if "__" in k})  # branch inputs (<branch>__<key>)
    ins = {k: (list(v) if not isinstance(v, str) else v) for k, v in ins.items()}
    outs = {k: getattr(smk.output, k) for k in module.OUTPUTS}
    params = dict(getattr(smk.params, "config", {}) or {})
    extra = {k: v for k, v in smk.params.items() if k not in ("config", "version")}
    params.update(extra)
    log = smk.log[0] if len(smk.log) else None
    if getattr(smk.params, "version", brainpipe.__version__) != brainpipe.__version__:
        logging.getLogger("brainpipe").warning(
            "rule params carry brainpipe %s but %s is installed", smk.params.version, brainpipe.__version__
        )
    _set_threads(int(getattr(smk, "threads", 1) or 1))
    n_gpu = int(getattr(smk.resources, "gpu", 0) or 0) if hasattr(smk, "resources") else 0
    if n_gpu:
        from brainpipe.training.gpus import claim_gpus

        claim_gpus(n_gpu)  # distinct devices for concurrent local GPU jobs (Snakemake assigns none)
    try:
        module.run(ins, outs, params, log)
    except BrainpipeError as err:
        _fail(str(err))


def _set_threads(n: int) -> None:
    """Hold numerical libraries to the rule's ``threads`` (BLAS/OpenMP pools; torch when a stage uses it)."""
    n = max(1, n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def cli(module_name: str, argv: list[str] | None = None) -> int:
    """``python -m brainpipe.stages.<name>``: run one stage outside Snakemake."""
    import importlib

    module = importlib.import_module(module_name)
    name = _stage_name(module)
    doc = (module.__doc__ or "").strip()
    parser = argparse.ArgumentParser(
        prog=f"python -m brainpipe.stages.{name}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for k, desc in module.INPUTS.items():
        # a branch's input ``<branch>__<key>`` (the report's) is ``--<branch>.<key>`` on the command line
        flag = "--" + ".".join(part.replace("_", "-") for part in k.split("__"))
        parser.add_argument(flag, dest=f"in_{k}", nargs="+", metavar="PATH", help=f"input: {desc}")
    for k, desc in module.OUTPUTS.items():
        parser.add_argument(
            f"--{k.replace('_', '-')}-out",
            dest=f"out_{k}",
            metavar="PATH",
            required=True,
            help=f"output: {desc}",
        )
    parser.add_argument(
        "--params", default="{}", help="stage parameters: a YAML/JSON file or an inline JSON object"
    )
    parser.add_argument("--log", default=None, help="log file (default: no log file)")
    args = parser.parse_args(argv)
    try:
        params = _load_params(args.params)
        ins = {}
        for k in module.INPUTS:
            v = getattr(args, f"in_{k}")
            ins[k] = None if v is None else (v[0] if len(v) == 1 else v)
        outs = {k: getattr(args, f"out_{k}") for k in module.OUTPUTS}
        module.run(ins, outs, params, args.log)
    except BrainpipeError as err:
        print(f"brainpipe: error: {err}", file=sys.stderr)
        return 1
    return 0


def _load_params(text: str) -> dict[str, Any]:
    p = Path(text)
    try:
        data = (
            yaml.safe_load(p.read_text())
            if p.suffix in (".yaml", ".yml", ".json") and p.exists()
            else json.loads(text)
        )
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise InputError(f"--params: not a YAML/JSON file or inline JSON object ({err})") from None
    if not isinstance(data, dict):
        raise InputError("--params: must be a mapping of parameter names to values")
    return data
