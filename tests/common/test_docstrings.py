"""Numpydoc validation of the public API, the shared docstring texts (``brainpipe._docs``) and the doctests.

The public API is every function and class in the ``__all__`` of the modules of :data:`MODULES`, plus the public
methods those classes define (inherited ones once, where they are defined). Each is checked by
``numpydoc.validate.validate`` for the codes of :data:`ENFORCED`; the main entry points also need an Examples
section (EX01). The examples themselves run as doctests (``# doctest: +SKIP`` where they need data or time).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest
from numpydoc.docscrape import FunctionDoc
from numpydoc.validate import validate

from brainpipe._docs import DOCDICT, fill_doc

#: the public modules whose ``__all__`` is validated (brainpipe.io's holds the registry API of brainpipe.io._registry)
MODULES = [
    "brainpipe.models",
    "brainpipe.config",
    "brainpipe.preprocess",
    "brainpipe.data",
    "brainpipe.simulate",
    "brainpipe.evaluate",
    "brainpipe.training",
    "brainpipe.layout",
    "brainpipe.report",
    "brainpipe.evaluate.brainmae",
    "brainpipe.evaluate.neuroformer",
    "brainpipe.training.neuroformer",
    "brainpipe.training.distributed",
    "brainpipe.training.streaming",
    "brainpipe.io",
]

#: numpydoc codes that fail the test (every code numpydoc checks, except those of IGNORED):
ENFORCED = {
    "GL08",  # no docstring
    "SS01",
    "SS02",
    "SS03",
    "SS04",
    "SS06",  # a one-line summary, capitalised, ending with a period
    "GL01",
    "GL02",
    "GL03",
    "GL05",  # blank lines and quotes where they belong, no tabs
    "GL06",
    "GL07",
    "GL09",
    "GL10",  # known sections in numpydoc's order, well-formed directives
    "PR01",
    "PR02",
    "PR03",  # every parameter documented, none that does not exist, in the signature's order
    "PR04",
    "PR05",
    "PR06",
    "PR10",  # each with a type ("x : int", not "x: int"; "int", not "integer")
    "PR07",
    "PR08",
    "PR09",  # and a description: capitalised, ending with a period
    "RT01",
    "RT02",
    "RT03",
    "RT04",
    "RT05",  # a Returns section for a function that returns, each value described
    "YD01",  # a Yields section for a generator
    "SA02",
    "SA03",
    "SA04",  # See Also entries, where there are some, described
}
#: not enforced: SA01 (a See Also section) and ES01 (an extended summary), which a short function rarely needs;
#: SS05 (summary starting with an infinitive verb), a heuristic that also flags nouns ending in "s" ("Metrics of
#: ..."); EX01 (an Examples section) except for the main entry points (MAIN_ENTRY_POINTS).
IGNORED = {"SA01", "ES01", "SS05", "EX01"}

#: the objects that must carry an Examples section (EX01)
MAIN_ENTRY_POINTS = {
    "brainpipe.models.PoissonGLM",
    "brainpipe.models.SwitchingGLM",
    "brainpipe.models.BrainMAE",
    "brainpipe.models.Neuroformer",
    "brainpipe.models.DynamicConnectome",
    "brainpipe.config.load_study",
    "brainpipe.simulate.simulate",
    "brainpipe.data.read",
    "brainpipe.data.write",
    "brainpipe.preprocess.bin_spikes",
    "brainpipe.layout.path",
    "brainpipe.evaluate.brainmae.pretrain_folds",
    "brainpipe.evaluate.brainmae.cross_validate_finetune",
    "brainpipe.evaluate.brainmae.score_encoders",
    "brainpipe.evaluate.neuroformer.score_neuroformer",
    "brainpipe.training.neuroformer.pretrain_neuroformer",
    "brainpipe.training.neuroformer.finetune_neuroformer",
    "brainpipe.io.read_spikes",
    "brainpipe.io.read_calcium",
    "brainpipe.io.iter_runs",
    "brainpipe.io.formats",
    "brainpipe.report.build_report",
}

#: objects whose docstrings are not done yet (name -> the codes they failed on when listed), for a module added to
#: MODULES before all its docstrings are done; each is still checked for a docstring (GL08). Remove an entry once
#: its docstring passes (the test fails on entries that pass, so this list only shrinks). Empty: everything passes.
PENDING: dict[str, str] = {}


def _public_objects() -> list[tuple[str, object]]:
    seen: set[int] = set()
    out: list[tuple[str, object]] = []
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            out.append((f"{modname}.{name}", obj))
            if not inspect.isclass(obj):
                continue
            for attr in dir(obj):
                if attr.startswith("_"):
                    continue
                raw = inspect.getattr_static(obj, attr)
                func = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
                if (
                    not inspect.isfunction(func)
                    or not func.__module__.startswith("brainpipe")
                    or id(func) in seen
                ):
                    continue  # properties, attributes, methods of other libraries', ones already validated
                seen.add(id(func))
                out.append((f"{modname}.{name}.{attr}", func))
    return out


def _failures(name: str, obj: object) -> list[str]:
    codes = ENFORCED | ({"EX01"} if name in MAIN_ENTRY_POINTS else set())
    # validated where it is defined: a public name can be shadowed by a module of the same name
    # (brainpipe.evaluate.communities), and an inherited method is the base class's
    where = f"{obj.__module__}.{obj.__qualname__}"
    return sorted({code for code, _ in validate(where)["errors"] if code in codes})


def test_public_api_docstrings():
    objects = dict(_public_objects())
    assert MAIN_ENTRY_POINTS <= objects.keys(), MAIN_ENTRY_POINTS - objects.keys()
    assert PENDING.keys() <= objects.keys(), (
        f"PENDING names objects outside the API: {PENDING.keys() - objects.keys()}"
    )
    failing, done = {}, []
    for name, obj in objects.items():
        codes = _failures(name, obj)
        if name in PENDING:
            if not codes:
                done.append(name)
            elif "GL08" in codes:
                failing[name] = ["GL08"]
        elif codes:
            failing[name] = codes
    lines = [f"{name}: {' '.join(codes)}" for name, codes in failing.items()]
    lines += [f"{name}: passes now, remove it from PENDING" for name in done]
    assert not lines, f"{len(lines)} docstring problem(s):\n" + "\n".join(lines)


def test_every_numpydoc_code_is_enforced_or_ignored():
    from numpydoc.validate import ERROR_MSGS

    assert not ENFORCED & IGNORED
    assert set(ERROR_MSGS) == ENFORCED | IGNORED, (
        f"decide on numpydoc's new codes: {set(ERROR_MSGS) - ENFORCED - IGNORED}"
    )


def test_all_lists_exist():
    for modname in MODULES:
        mod = importlib.import_module(modname)
        assert hasattr(mod, "__all__"), f"{modname} has no __all__"
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, f"{modname}.__all__ names what it lacks: {missing}"


# -- the shared texts ----------------------------------------------------------------------------------------------
def test_fill_doc_indents_shared_texts():
    class Model:
        @fill_doc
        def fit(self, counts, seed=0):
            """Fit.

            Parameters
            ----------
            %(counts)s
            %(seed)s

            Returns
            -------
            Model
                Itself; 100% fitted.
            """
            return self

    doc = Model.fit.__doc__
    assert "%(" not in doc and "100% fitted" in doc
    lines = doc.splitlines()
    assert "            counts : xarray.Dataset" in lines
    assert (
        "                Seed of the random number generator; the same seed gives the same result." in lines
    )
    params = FunctionDoc(Model.fit)["Parameters"]
    assert [(p.name, p.type) for p in params] == [("counts", "xarray.Dataset"), ("seed", "int")]
    assert fill_doc(lambda: None)  # no docstring: left as it is


def test_fill_doc_unknown_name():
    def f():
        """Do.

        Parameters
        ----------
        %(no_such_text)s
        """

    with pytest.raises(KeyError, match="no_such_text"):
        fill_doc(f)


def test_shared_texts_are_numpydoc_entries():
    # each text is one or more "parameter : type" lines, each followed by its description indented by 4, after
    # a section title and its underline where the text is a whole section
    for name, text in DOCDICT.items():
        entries: list[list[str]] = []
        lines, section = text.splitlines(), "Parameters"
        if lines[1:2] and set(lines[1]) == {"-"}:
            section, lines = lines[0], lines[2:]
            assert section in ("Parameters", "Returns", "Yields", "Raises"), name
            assert len(text.splitlines()[1]) == len(section), name
        for line in lines:
            if line.startswith("    "):
                assert entries, f"{name}: starts with a description, not 'parameter : type'"
                entries[-1].append(line)
            else:
                # a Returns/Yields entry is its type alone (numpydoc's RT02 where one value is returned), a
                # Raises entry an exception
                assert section != "Parameters" or " : " in line, f"{name}: {line!r} is not 'parameter : type'"
                entries.append([line])
        for head, *body in entries:
            assert body, f"{name}: {head!r} has no description"
            assert body[-1].rstrip().endswith("."), (
                f"{name}: the description of {head!r} does not end with a period"
            )


# -- the examples ---------------------------------------------------------------------------------------------------
def _modules_with_examples() -> list[str]:
    names = ["brainpipe._docs"]
    for modname in MODULES:
        mod = importlib.import_module(modname)
        names.append(modname)
        if hasattr(mod, "__path__"):
            names += [m.name for m in pkgutil.walk_packages(mod.__path__, prefix=modname + ".")]
    return sorted(set(names))


@pytest.mark.parametrize("modname", _modules_with_examples())
def test_doctests(modname, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    mod = importlib.import_module(modname)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(mod, optionflags=flags, verbose=False, report=False)
    assert result.failed == 0, (
        f"{modname}: {result.failed} of {result.attempted} doctest examples failed (see above)"
    )
