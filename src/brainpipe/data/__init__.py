"""Data contracts for every intermediate file, with validated, atomic, provenance-stamped I/O.

>>> from brainpipe.data import read, write, check, CONTRACTS
"""

from brainpipe.data.contracts import (
    CONTRACT_VERSION,
    CONTRACTS,
    SPLIT_FLAGS,
    Contract,
    Var,
    check,
    get_contract,
)
from brainpipe.data.io import open_dataset, provenance_of, read, stamp, summarize, validate_file, write
from brainpipe.data.provenance import make_provenance, sha256_file

__all__ = [
    "CONTRACTS",
    "CONTRACT_VERSION",
    "SPLIT_FLAGS",
    "Contract",
    "Var",
    "check",
    "get_contract",
    "make_provenance",
    "open_dataset",
    "provenance_of",
    "read",
    "sha256_file",
    "stamp",
    "summarize",
    "validate_file",
    "write",
]
