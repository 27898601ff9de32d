"""Property-based tests of the spec loader (issue 12, item 16, the archspec half).

Take a real family document from ``archspec/specs``, mutate one value anywhere in it (base or
variant) to something bad (NaN, infinities, huge or negative numbers, a wrong type, deep nesting,
an undefined variable) or delete it, and load it as a dict: the result is either a resolved spec
within :class:`archspec.Limits` or one :class:`archspec.SpecError` whose one-line message names a
JSON path; never another exception, never a hang, never a runaway allocation.

The default suite runs a small, deterministic share (``derandomize=True``, ~50 examples per
property, a few seconds). A longer, random fuzz run is opt-in::

    CROSSFRAME_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest -n 0 tests/test_spec_fuzz.py -q

``CROSSFRAME_FUZZ_EXAMPLES`` sets the example count of every property here and turns
derandomisation off (each run explores new examples; hypothesis prints the failing one).
"""

import copy
import json
import math
import os
import tracemalloc
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archspec
from archspec import Limits, SpecError
from archspec.resolve import SPEC_DIR

_FUZZ = os.environ.get("CROSSFRAME_FUZZ_EXAMPLES", "").strip()
FUZZ = settings(
    max_examples=int(_FUZZ) if _FUZZ else 50,
    derandomize=not _FUZZ,
    deadline=timedelta(seconds=3),  # a load takes milliseconds; a hang or blow-up takes far longer
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MAX_PEAK_BYTES = 64 * 2**20  # no load may allocate more than this, whatever the spec says

DOCS = {f.name: json.loads(f.read_text()) for f in sorted(SPEC_DIR.glob("*.json"))}


def _paths(value, path=()):
    """Every position in a JSON document, as a tuple of keys and indices."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield path + (k,)
            yield from _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield path + (i,)
            yield from _paths(v, path + (i,))


PATHS = {name: [p for p in _paths(doc) if p[0] in ("base", "variants")] for name, doc in DOCS.items()}


def _deep(n):
    value = []
    for _ in range(n):
        value = [value]
    return value


BAD_VALUES = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -(10**400), 10**15, 1e308, -1e308, -1, 0, 0.5,
                     -0.5, 1e-320, True, False, None, "", "x", "$undefined", "relu", [], {}, [1, 2], {"a": 1},
                     _deep(70), _deep(10_000), 2**53 + 1, 65_537, 8193, 10**6]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)

DELETE = object()


@st.composite
def mutated(draw):
    file = draw(st.sampled_from(sorted(DOCS)))
    doc = copy.deepcopy(DOCS[file])
    variant = draw(st.sampled_from(sorted(doc["variants"])))
    path = draw(st.sampled_from(PATHS[file]))
    value = draw(st.one_of(st.just(DELETE), BAD_VALUES))
    *parents, last = path
    target = doc
    for p in parents:
        target = target[p]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return file, variant, path, doc


def _check_outcome(load):
    """``load()`` resolves within the limits or raises one SpecError naming a JSON path."""
    tracemalloc.start()
    try:
        spec = load()
    except SpecError as err:
        message = str(err)
        assert "\n" not in message and len(message) < 2000, message
        assert err.path.startswith(("$", "<override")), message
        assert f"{err.path}: found " in message, message
        return err
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MAX_PEAK_BYTES, f"peak {peak / 2**20:.0f} MiB"
    limits = Limits()
    assert spec.params <= limits.max_params
    assert len(list(spec.walk())) <= limits.max_layers
    assert all(0 < d for d in spec.output_shape)
    return spec


@FUZZ
@given(mutated())
def test_mutated_real_specs_resolve_or_raise_spec_error(case):
    file, variant, path, doc = case
    _check_outcome(lambda: archspec.load(doc, variant=variant))


NAMES = archspec.list_variants()
OVERRIDE_VALUES = {
    "input_size": st.one_of(st.integers(min_value=-8, max_value=2048), st.sampled_from([10**400, 10**6, math.nan,
                                                                                          True, "224", 224.0])),
    "width": st.one_of(st.floats(min_value=0.01, max_value=4.0), st.sampled_from([0, -1, math.nan, math.inf,
                                                                                  1e308, 1e6, "1.0"])),
    "depth": st.one_of(st.floats(min_value=0.01, max_value=4.0), st.sampled_from([0, math.nan, math.inf, 1e308])),
    "num_classes": st.one_of(st.integers(min_value=-2, max_value=100_000), st.sampled_from([10**400, 2**60])),
    "bn_eps": st.one_of(st.floats(min_value=1e-8, max_value=1.0), st.sampled_from([0.0, math.nan, math.inf])),
    "drop_path_rate": st.one_of(st.floats(min_value=0.0, max_value=0.99), st.sampled_from([1.0, math.nan])),
    "in_channels": st.one_of(st.integers(min_value=-1, max_value=64), st.sampled_from([10**6, 3.0])),
    "padding": st.sampled_from(["symmetric", "tf_same", "valid", "same", 0, None]),
}


@FUZZ
@given(st.sampled_from(NAMES), st.dictionaries(st.sampled_from(sorted(OVERRIDE_VALUES)), st.just(None), max_size=3),
       st.data())
def test_random_overrides_resolve_or_raise_spec_error(name, keys, data):
    """What the CLI's ``--input-size``/``--width`` and ``archspec.load(**overrides)`` can pass."""
    overrides = {k: data.draw(OVERRIDE_VALUES[k], label=k) for k in keys}
    _check_outcome(lambda: archspec.load(name, **overrides))


@FUZZ
@given(st.sampled_from(sorted(DOCS)), st.integers(min_value=1, max_value=40), st.data())
def test_exploding_variables_fail_fast(file, levels, data):
    """A variable that doubles (or more) at each level, used anywhere: bounded, whatever the depth."""
    doc = copy.deepcopy(DOCS[file])
    fan = data.draw(st.integers(min_value=2, max_value=4), label="fan")
    chain = {"x0": [1] * fan}
    for i in range(1, levels):
        chain[f"x{i}"] = [f"$x{i - 1}"] * fan
    doc["base"].setdefault("vars", {}).update(chain)
    path = data.draw(st.sampled_from([p for p in PATHS[file] if p[:2] != ("base", "vars")]), label="path")
    target = doc
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = f"$x{levels - 1}"
    variant = sorted(doc["variants"])[0]
    small = 5000  # a small limit keeps the admitted expansions cheap; the mechanism is the same
    result = _check_outcome(lambda: archspec.load(doc, variant=variant, limits={"max_spec_nodes": small}))
    if fan ** levels > small:
        assert isinstance(result, SpecError), result
        if path[0] == "base" and len(path) > 1:  # the family's shape is intact: the expansion is refused
            assert getattr(result, "limit", None) == "max_spec_nodes", result
