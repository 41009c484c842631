from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import fitkit as fk
from fitkit import tree


class Pair(NamedTuple):
    a: jnp.ndarray
    b: jnp.ndarray


class Inner(eqx.Module):
    coeffs: jnp.ndarray
    label: str = eqx.field(static=True, default="inner")


class Outer(eqx.Module):
    inner: Inner
    layers: tuple


@pytest.fixture
def nested():
    return {
        "wfe": jnp.arange(3.0),
        "position": {"blue": jnp.array([0.1, 0.2]), "red": jnp.array([0.3, 0.4])},
        "flux": {"blue": jnp.array(6.0)},
    }


def test_get_nested_dict(nested):
    assert tree.get(nested, "position.red")[1] == 0.4
    assert tree.get(nested, "flux.blue") == 6.0
    assert set(tree.get(nested, "position")) == {"blue", "red"}
    wfe, flux = tree.get(nested, ["wfe", "flux.blue"])
    np.testing.assert_array_equal(wfe, [0.0, 1.0, 2.0])
    assert flux == 6.0


def test_set_is_pure_and_replaces(nested):
    new = tree.set(nested, "position.blue", jnp.array([9.0, 9.0]))
    np.testing.assert_array_equal(new["position"]["blue"], [9.0, 9.0])
    np.testing.assert_array_equal(nested["position"]["blue"], [0.1, 0.2])
    assert new["position"]["red"] is nested["position"]["red"]
    many = tree.set(nested, ["wfe", "flux.blue"], [jnp.zeros(3), 1.0])
    assert float(many["flux"]["blue"]) == 1.0 and float(many["wfe"].sum()) == 0.0


def test_tuples_lists_and_namedtuples():
    params = (jnp.array(1.0), [jnp.array(2.0), Pair(jnp.array(3.0), jnp.array(4.0))])
    assert tree.get(params, "1.1.b") == 4.0
    assert tree.get(params, "1[0]") == 2.0
    new = tree.set(params, "1.1.a", 30.0)
    assert isinstance(new, tuple) and isinstance(new[1], list) and isinstance(new[1][1], Pair)
    assert float(new[1][1].a) == 30.0 and float(params[1][1].a) == 3.0
    assert tree.leaf_paths(params) == ["0", "1.0", "1.1.a", "1.1.b"]


def test_modules_including_static_fields():
    m = Outer(inner=Inner(jnp.zeros(2)), layers=(jnp.ones(1), jnp.ones(2)))
    assert tree.get(m, "inner.label") == "inner"
    new = tree.set(m, "inner.coeffs", jnp.array([1.0, 2.0]))
    assert isinstance(new, Outer) and isinstance(new.inner, Inner)
    np.testing.assert_array_equal(new.inner.coeffs, [1.0, 2.0])
    np.testing.assert_array_equal(m.inner.coeffs, [0.0, 0.0])
    assert tree.get(tree.set(m, "layers.1", jnp.zeros(2)), "layers[1]").sum() == 0.0
    assert tree.set(m, "inner.label", "other").inner.label == "other"


def test_names_and_ravel_order(nested):
    names = tree.names(nested)
    assert names == [
        "flux.blue",
        "position.blue[0]",
        "position.blue[1]",
        "position.red[0]",
        "position.red[1]",
        "wfe[0]",
        "wfe[1]",
        "wfe[2]",
    ]
    flat, unravel = tree.ravel(nested)
    assert flat.shape == (8,) and flat[0] == 6.0 and flat[-1] == 2.0
    back = unravel(flat)
    np.testing.assert_array_equal(back["position"]["red"], nested["position"]["red"])
    assert tree.names({"img": jnp.zeros((2, 2))}) == ["img[0,0]", "img[0,1]", "img[1,0]", "img[1,1]"]
    assert tree.size(nested) == 8


def test_unknown_path_lists_close_valid_paths(nested):
    with pytest.raises(fk.PathError) as info:
        tree.get(nested, "positon.blue")
    message = str(info.value)
    assert "'positon'" in message and "Did you mean 'position.blue'" in message
    assert "position.red" in message
    with pytest.raises(ValueError, match="'position.green'"):
        tree.set(nested, "position.green", 1.0)
    with pytest.raises(KeyError):
        tree.get(nested, "wfe.x")
    with pytest.raises(fk.PathError, match="'layers.5'"):
        tree.get({"layers": (1.0, 2.0)}, "layers.5")


def test_bad_path_types_and_value_counts(nested):
    with pytest.raises(TypeError, match="string"):
        tree.get(nested, 3)
    with pytest.raises(ValueError, match="2 paths were given with 1 values"):
        tree.set(nested, ["wfe", "flux.blue"], [1.0])
    with pytest.raises(ValueError, match="single value"):
        tree.set(nested, ["wfe", "flux.blue"], 1.0)
