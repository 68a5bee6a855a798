"""The unit-cube encoding: round trips, bounds, native types and equal shares per value."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuneforge.search_spaces import CategoricalParam, FloatParam, IntParam, SearchSpace


@st.composite
def float_params(draw: st.DrawFn) -> FloatParam:
    log = draw(st.booleans())
    low = draw(st.floats(1e-6, 1e3) if log else st.floats(-1e3, 1e3))
    span = draw(st.floats(1e-3, 1e4))
    if not log and draw(st.booleans()):
        step = draw(st.sampled_from([0.5, 0.1, 0.25, 2.0]))
        return FloatParam("x", low, low + step * draw(st.integers(1, 200)), step=step)
    return FloatParam("x", low, low + span, log=log)


@st.composite
def int_params(draw: st.DrawFn) -> IntParam:
    log = draw(st.booleans())
    low = draw(st.integers(1, 1000) if log else st.integers(-1000, 1000))
    step = 1 if log else draw(st.integers(1, 7))
    return IntParam("n", low, low + step * draw(st.integers(0, 500)), log=log, step=step)


CHOICES = st.lists(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=4),
                             st.floats(-5, 5, allow_nan=False)), min_size=1, max_size=6,
                   unique_by=lambda c: (type(c), c))


@st.composite
def spaces(draw: st.DrawFn) -> SearchSpace:
    kinds = draw(st.lists(st.sampled_from(["float", "int", "categorical"]), min_size=1, max_size=5))
    params = []
    for i, kind in enumerate(kinds):
        if kind == "categorical":
            param = CategoricalParam("c", tuple(draw(CHOICES)))
        else:
            param = draw(float_params() if kind == "float" else int_params())
        params.append(type(param)(**{**param.__dict__, "name": f"p{i}"}))
    return SearchSpace(name="s", trainable="sklearn", metric="m", mode="max", params=tuple(params))


def _values_of(space: SearchSpace, draw: st.DrawFn) -> dict:
    """A valid value for every param, bounds included."""
    values = {}
    for param in space.params:
        if isinstance(param, CategoricalParam):
            values[param.name] = draw(st.sampled_from(param.choices))
        elif isinstance(param, IntParam):
            k = draw(st.integers(0, (param.high - param.low) // param.step))
            values[param.name] = param.low + k * param.step
        elif param.step is not None:
            n = round((param.high - param.low) / param.step)
            values[param.name] = param.decode(np.array([(draw(st.integers(0, n)) + 0.5) / (n + 1)]))
        else:
            bounds_or_inside = st.sampled_from([param.low, param.high]) | st.floats(param.low, param.high)
            values[param.name] = draw(bounds_or_inside)
    return values


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return type(a) is type(b) and a == b


@given(st.data())
def test_decode_of_encode_gives_the_values_back(data: st.DataObject) -> None:
    space = data.draw(spaces())
    values = _values_of(space, data.draw)
    point = space.encode(values)
    assert point.shape == (space.n_dims,)
    assert np.all((point >= 0) & (point <= 1))
    decoded = space.decode(point)
    assert all(_same(decoded[name], values[name]) for name in space.param_names), (values, decoded)


@given(st.data())
def test_any_point_decodes_to_valid_native_values(data: st.DataObject) -> None:
    space = data.draw(spaces())
    point = np.array(data.draw(st.lists(st.floats(-0.5, 1.5), min_size=space.n_dims, max_size=space.n_dims)))
    values = space.decode(point)
    assert space.contains(values), values
    for param in space.params:
        if isinstance(param, IntParam):
            assert type(values[param.name]) is int
        if isinstance(param, FloatParam):
            assert type(values[param.name]) is float
    # Snapping is idempotent: a decoded point re-encodes to itself (exactly for ints, steps and
    # categoricals; to the last bits for a continuous log float, whose exp(log(v)) may move one ulp).
    again = space.decode(space.encode(values))
    assert all(_same(again[name], values[name]) for name in space.param_names), (values, again)


def test_bounds_are_inclusive_and_each_int_owns_an_equal_share() -> None:
    param = IntParam("n", 3, 7)
    counts = Counter(param.decode(np.array([u])) for u in np.linspace(0, 1, 5001))
    assert sorted(counts) == [3, 4, 5, 6, 7]
    assert max(counts.values()) - min(counts.values()) <= 2


def test_log_int_spreads_over_orders_of_magnitude() -> None:
    param = IntParam("n", 1, 1000, log=True)
    assert param.decode(np.array([0.0])) == 1 and param.decode(np.array([1.0])) == 1000
    # Each int owns [v - 0.5, v + 0.5]: the middle is sqrt(0.5 * 1000.5) ~ 22.4.
    assert param.decode(np.array([0.5])) == 22


def test_stepped_float_decodes_onto_its_grid_without_float_noise() -> None:
    param = FloatParam("x", 0.1, 1.0, step=0.1)
    values = {param.decode(np.array([u])) for u in np.linspace(0, 1, 1001)}
    assert values == {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}


def test_categorical_is_one_hot_and_keeps_types_apart() -> None:
    param = CategoricalParam("c", (1, True, "1", None))
    assert param.encode(True) == [0.0, 1.0, 0.0, 0.0]
    assert param.decode(np.array([0.1, 0.2, 0.9, 0.3])) == "1"
    with pytest.raises(ValueError, match="not one of"):
        param.encode(1.0)


def test_encode_names_missing_values() -> None:
    space = SearchSpace(name="s", trainable="t", metric="m", mode="max",
                        params=(IntParam("a", 0, 3), IntParam("b", 0, 3)))
    with pytest.raises(ValueError, match=r"no value for \['b'\]"):
        space.encode({"a": 1, "unrelated": 5})


@given(st.data())
def test_vectorised_snap_equals_encode_of_decode(data: st.DataObject) -> None:
    space = data.draw(spaces())
    rows = data.draw(st.lists(st.lists(st.floats(-0.2, 1.2), min_size=space.n_dims, max_size=space.n_dims),
                              min_size=1, max_size=5))
    points = np.array(rows)
    expected = np.array([space.encode(space.decode(x)) for x in points])
    np.testing.assert_allclose(space.snap(points), expected, atol=1e-9)
