import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitkit as fk


class Optics(fk.Module):
    coefficients: jnp.ndarray
    filters: dict
    diameter: float = 1.2


class System(fk.Module):
    optics: Optics
    gain: jnp.ndarray


@pytest.fixture
def system():
    optics = Optics(coefficients=jnp.zeros(3), filters={"blue": jnp.linspace(1.0, 1.2, 5)})
    return System(optics=optics, gain=jnp.array(2.0))


def test_get_set_add_multiply(system):
    assert system.get("optics.diameter") == 1.2
    np.testing.assert_array_equal(system.get("optics.filters.blue")[0], 1.0)
    new = system.set("optics.coefficients", jnp.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(new.get("optics.coefficients"), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(system.get("optics.coefficients"), [0.0, 0.0, 0.0])
    added = new.add("optics.coefficients", 1.0)
    np.testing.assert_array_equal(added.optics.coefficients, [2.0, 3.0, 4.0])
    scaled = added.multiply(["optics.coefficients", "gain"], [2.0, 10.0])
    np.testing.assert_array_equal(scaled.optics.coefficients, [4.0, 6.0, 8.0])
    assert float(scaled.gain) == 20.0
    both = system.set(["gain", "optics.diameter"], [5.0, 2.4])
    assert float(both.gain) == 5.0 and float(both.optics.diameter) == 2.4
    assert isinstance(both, System) and isinstance(both.optics, Optics)


def test_module_verbs_work_under_jit(system):
    @jax.jit
    def f(sys, c):
        return sys.set("optics.coefficients", c).add("gain", 1.0)

    out = f(system, jnp.ones(3))
    assert float(out.gain) == 3.0 and float(out.optics.coefficients.sum()) == 3.0


def test_module_unknown_path(system):
    with pytest.raises(fk.PathError, match="optics.coefficients"):
        system.get("optics.coeficients")
