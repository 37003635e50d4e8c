"""Stages: one module per Snakemake rule, each with ``run(inputs, outputs, params, log)``.

Every stage is also a command: ``python -m brainpipe.stages.<name> --help``. :data:`STAGES` names every stage
module of this package (private helpers start with ``_``), found from the package itself, so a new stage is listed
(and its command tested) as soon as its module exists.
"""

import pkgutil

#: Every stage module's name, sorted.
STAGES: tuple[str, ...] = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and not m.ispkg)
)
