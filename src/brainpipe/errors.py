"""Errors meant for people.

Every error a user can cause (bad config, bad input file, broken contract) is a :class:`BrainpipeError`
whose ``str()`` is one line: what file or key, what is wrong, and what to do. The stage runner and the CLI
print that line alone (no traceback) and exit non-zero.
"""

from __future__ import annotations


class BrainpipeError(Exception):
    """Base class: a problem a user can fix. ``str(err)`` is one line."""

    def __str__(self) -> str:  # keep messages on one line whatever the caller passed
        return " ".join(super().__str__().split())


class ConfigError(BrainpipeError):
    """The study configuration is invalid (unknown key, wrong type, out-of-range value, missing path)."""


class ContractError(BrainpipeError):
    """A dataset violates its data contract. Carries every violation found."""

    def __init__(self, path: str, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        first = problems[0] if problems else "unknown problem"
        more = (
            f" (and {len(problems) - 1} more problem(s); run 'brainpipe validate {path}')"
            if len(problems) > 1
            else ""
        )
        super().__init__(f"{path}: {first}{more}")


class InputError(BrainpipeError):
    """An input file is missing, unreadable or not in the expected format."""


class OutputError(BrainpipeError):
    """An output path cannot be written: it holds something brainpipe did not write, or another stage's output."""
