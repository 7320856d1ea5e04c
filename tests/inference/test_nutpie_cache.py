"""nutpie's C callbacks from the disk cache: the same log density and gradient as nutpie's own."""

import ctypes
from types import SimpleNamespace

import numpy as np
import pymc as pm
import pytest

from bayes_spill.inference import nutpie_cache

pytest.importorskip("nutpie")


def toy_model(size: int = 20_000) -> pm.Model:
    """A regression whose data are shared variables over numba's 1 MB constant limit (as the
    default model's are), so that nutpie's own callbacks would hold them by address."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(size, 8))
    y = x @ np.linspace(-1.0, 1.0, 8) + rng.normal(size=size)
    with pm.Model() as model:
        x_data, y_data = pm.Data("x", x), pm.Data("y", y)
        beta = pm.Normal("beta", 0.0, 1.0, shape=8)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("obs", x_data @ beta, sigma, observed=y_data)
        pm.Deterministic("scale", 2.0 * sigma)
    return model


def callbacks_at(compiled, point: np.ndarray):
    """(return code, log density, gradient) and (return code, expanded draw) at an unconstrained point."""
    pointer = ctypes.POINTER(ctypes.c_double)
    user_data = compiled.user_data.ctypes.data_as(ctypes.c_void_p)
    gradient, logp = np.zeros(compiled.n_dim), np.zeros(())
    logp_code = compiled.compiled_logp_func.ctypes(
        compiled.n_dim,
        point.ctypes.data_as(pointer),
        gradient.ctypes.data_as(pointer),
        logp.ctypes.data_as(pointer),
        user_data,
    )
    expanded = np.zeros(compiled.n_expanded)
    expand_code = compiled.compiled_expand_func.ctypes(
        compiled.n_dim, compiled.n_expanded, point.ctypes.data_as(pointer), expanded.ctypes.data_as(pointer), user_data
    )
    return (logp_code, float(logp), gradient), (expand_code, expanded)


def test_cached_callbacks_load_from_disk_and_equal_nutpies():
    import nutpie

    model = toy_model()
    first = nutpie_cache.compile_pymc_model(model)
    again = nutpie_cache.compile_pymc_model(toy_model())
    assert again.compiled_logp_func.cache_hits == 1 and again.compiled_expand_func.cache_hits == 1
    theirs = nutpie.compile_pymc_model(model, backend="numba")
    point = np.random.default_rng(4).normal(size=theirs.n_dim)
    (code, logp, gradient), (expand_code, expanded) = callbacks_at(theirs, point)
    assert code == 0 and expand_code == 0
    for mine in (first, again):
        (my_code, my_logp, my_gradient), (my_expand_code, my_expanded) = callbacks_at(mine, point)
        assert (my_code, my_expand_code) == (0, 0)
        assert my_logp == logp
        np.testing.assert_array_equal(my_gradient, gradient)
        np.testing.assert_array_equal(my_expanded, expanded)


def test_the_cache_key_follows_the_wrapped_function_and_the_datas_types():
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    def wrapped():
        pass

    def Inner():  # noqa: N802 - stands for a numba dispatcher
        return SimpleNamespace(py_func=wrapped)

    data = {"a": np.zeros((3, 2)), "b": np.zeros(4, dtype=np.int64)}
    assert nutpie_cache._cache_key("logp", Inner(), (5,), ["a", "b"], data) is None  # PyTensor keeps no key
    CACHED_SRC_FUNCTIONS[wrapped] = "pytensor-key"
    key = nutpie_cache._cache_key("logp", Inner(), (5,), ["a", "b"], data)
    assert key == nutpie_cache._cache_key("logp", Inner(), (5,), ["a", "b"], {k: v + 1 for k, v in data.items()})
    others = [
        nutpie_cache._cache_key("expand", Inner(), (5,), ["a", "b"], data),
        nutpie_cache._cache_key("logp", Inner(), (6,), ["a", "b"], data),
        nutpie_cache._cache_key("logp", Inner(), (5,), ["a", "b"], {**data, "a": np.zeros((3, 2), np.float32)}),
        nutpie_cache._cache_key("logp", Inner(), (5,), ["a", "b"], {**data, "a": np.zeros(6)}),
    ]
    CACHED_SRC_FUNCTIONS[wrapped] = "another-pytensor-key"
    others.append(nutpie_cache._cache_key("logp", Inner(), (5,), ["a", "b"], data))
    assert len({key, *others}) == 6
