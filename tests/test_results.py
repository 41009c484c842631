import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitkit as fk


@pytest.fixture
def result():
    params = {"wfe": jnp.arange(3.0), "position": {"blue": jnp.array([0.1, 0.2])}, "scale": (jnp.array(2.0),)}
    history_params = jax.tree.map(lambda x: jnp.stack([x, x + 1.0]), params)
    return fk.FitResult(
        params=params,
        loss=0.5,
        steps=4,
        converged=True,
        message="the loss stopped improving",
        history={
            "step": np.arange(4),
            "loss": np.array([4.0, 2.0, 1.0, 0.5]),
            "params": history_params,
            "params_step": np.array([0, 2]),
        },
        wall_time=0.25,
        method="fit:optax",
        stats={"loss_evals": 4},
    )


def test_save_load_round_trips_exactly(result, tmp_path):
    path = tmp_path / "fit.result"
    result.save(path)
    back = fk.FitResult.load(path)
    assert path.exists()
    for a, b in zip(jax.tree.leaves(result), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree.structure(jax.tree.map(np.asarray, result.params)) == jax.tree.structure(back.params)
    assert back.message == result.message and back.converged is True and back.stats == {"loss_evals": 4}


def test_to_dataframe_columns(result):
    frame = result.to_dataframe()
    assert list(frame.columns) == [
        "step",
        "loss",
        "position.blue[0]",
        "position.blue[1]",
        "scale.0",
        "wfe[0]",
        "wfe[1]",
        "wfe[2]",
    ]
    assert len(frame) == 4
    assert frame["wfe[2]"].tolist()[2] == 3.0 and np.isnan(frame["wfe[2]"].tolist()[1])
    # a result built by hand was never judged: its repr says so
    assert "NOT VALID (unchecked)" in repr(result) and "edm=nan" in repr(result)


def test_save_rejects_unsupported_params(tmp_path):
    res = fk.FitResult(params={"f": lambda x: x}, loss=0.0, steps=0, converged=False, message="")
    with pytest.raises(TypeError, match="cannot save result.params.f"):
        res.save(tmp_path / "x.npz")
