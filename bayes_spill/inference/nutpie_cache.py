"""nutpie's numba model with its two C callbacks cached on disk, as PyTensor caches its functions.

``nutpie.compile_pymc_model(backend="numba")`` wraps PyTensor's compiled log density (with its
gradient) and its expansion into the trace in two numba C callbacks. PyTensor's numba functions are
cached on disk; nutpie's callbacks are not: they are closures holding the model's data arrays, which
numba embeds by address when over 1 MB ("dynamic globals"), so numba cannot cache them, and every
process compiled both again. That compile links PyTensor's whole function into each callback and
optimises it once more: most of the time before the first draw.

Here the same callbacks come from source whose only free names are globals (``extract`` reads the
data at run time from nutpie's ``user_data``, as in nutpie; its placeholder arrays have one element
each), registered with PyTensor's numba cache locator (``pytensor.link.numba.cache``) under a key
made of PyTensor's own key for the wrapped function, the data's dtypes and ranks, the model's size
and the library versions. numba then stores the compiled callbacks beside PyTensor's functions and
loads them in the next process. Where PyTensor did not cache the wrapped function (no key), nutpie's
own callback is compiled, as before.
"""

from __future__ import annotations

import hashlib
import threading
import warnings

import numpy as np

# Part of the cache key: change it whenever the sources below change.
CALLBACK_VERSION = "1"

# nutpie's logp_numba and expand_numba (nutpie.compile_pymc), with globals for their free names.
LOGP_SOURCE = """
def logp_numba(dim, x_, out_, logp_, user_data_):
    if dim != n_dim:
        return -1
    try:
        x = numba.carray(x_, (n_dim,))
        out = numba.carray(out_, (n_dim,))
        logp = numba.carray(logp_, ())
        logp_val, grad = extract(x, user_data_)
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""

EXPAND_SOURCE = """
def expand_numba(dim, expanded, x_, out_, user_data_):
    if dim != n_dim:
        return -1
    if expanded != n_expanded:
        return -1
    try:
        x = numba.carray(x_, (n_dim,))
        out = numba.carray(out_, (n_expanded,))
        (values,) = extract(x, user_data_)
        out[...] = values
    except Exception:
        return -2
    return 0
"""

_PATCH_LOCK = threading.Lock()


def compile_pymc_model(model):
    """``nutpie.compile_pymc_model(model, backend="numba")`` with the C callbacks cached on disk.

    Parameters
    ----------
    model : pymc.Model
        The model; its data as shared variables (``fitting.with_data_as_inputs``), so that
        PyTensor caches the functions the callbacks wrap.

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
        What nutpie returns; ``compiled_logp_func.cache_hits`` is 1 where the log density's
        callback came from the cache.
    """
    import nutpie
    from nutpie import compile_pymc

    # nutpie builds the callbacks in these two module functions and passes **kwargs (here
    # cache=True) on to numba.cfunc; swapped for the duration of one compile.
    with _PATCH_LOCK:
        nutpie_logp, nutpie_expand = compile_pymc._make_c_logp_func, compile_pymc._make_c_expand_func
        compile_pymc._make_c_logp_func = _logp_callback(nutpie_logp)
        compile_pymc._make_c_expand_func = _expand_callback(nutpie_expand)
        try:
            return nutpie.compile_pymc_model(model, backend="numba", cache=True)
        except Exception as error:  # noqa: BLE001 - a broken cache entry must not stop a fit
            warnings.warn(f"nutpie's callbacks compiled without the disk cache ({error!r})", stacklevel=2)
        finally:
            compile_pymc._make_c_logp_func, compile_pymc._make_c_expand_func = nutpie_logp, nutpie_expand
    return nutpie.compile_pymc_model(model, backend="numba")


def _logp_callback(nutpie_make):
    def make(n_dim, logp_fn, user_data, shared_keys, shared_data):
        key = _cache_key("logp", logp_fn, (n_dim,), shared_keys, shared_data)
        if key is None:
            return nutpie_make(n_dim, logp_fn, user_data, shared_keys, shared_data)
        import numba

        names = {"n_dim": n_dim, "extract": _extract(logp_fn, user_data, shared_keys, shared_data)}
        signature = numba.types.int64(
            numba.types.uint64,
            numba.types.CPointer(numba.types.double),
            numba.types.CPointer(numba.types.double),
            numba.types.CPointer(numba.types.double),
            numba.types.voidptr,
        )
        return _from_source(LOGP_SOURCE, "logp_numba", names, key), signature

    return make


def _expand_callback(nutpie_make):
    def make(n_dim, n_expanded, expand_fn, user_data, shared_keys, shared_data):
        key = _cache_key("expand", expand_fn, (n_dim, n_expanded), shared_keys, shared_data)
        if key is None:
            return nutpie_make(n_dim, n_expanded, expand_fn, user_data, shared_keys, shared_data)
        import numba

        names = {
            "n_dim": n_dim,
            "n_expanded": n_expanded,
            "extract": _extract(expand_fn, user_data, shared_keys, shared_data),
        }
        signature = numba.types.int64(
            numba.types.uint64,
            numba.types.uint64,
            numba.types.CPointer(numba.types.double),
            numba.types.CPointer(numba.types.double),
            numba.types.voidptr,
        )
        return _from_source(EXPAND_SOURCE, "expand_numba", names, key), signature

    return make


def _extract(inner, user_data, shared_keys, shared_data):
    """nutpie's reader of the data from user_data, built on one-element placeholders of the same
    types: the real arrays would be compiled in as constants (or, over 1 MB, by address)."""
    from nutpie.compile_pymc import make_extraction_fn

    return make_extraction_fn(inner, _placeholders(shared_keys, shared_data), shared_keys, user_data.dtype)


def _placeholders(shared_keys, shared_data) -> dict[str, np.ndarray]:
    placeholders = {}
    for key in shared_keys:
        array = shared_data[key]
        placeholder = np.zeros((1,) * array.ndim, dtype=array.dtype)
        placeholder.flags.writeable = array.flags.writeable
        placeholders[key] = placeholder
    return placeholders


def _cache_key(kind: str, inner, sizes: tuple[int, ...], shared_keys, shared_data) -> str | None:
    """What the compiled callback depends on, or None where PyTensor keeps no key for ``inner``."""
    import numba
    import nutpie
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    inner_key = CACHED_SRC_FUNCTIONS.get(getattr(inner, "py_func", inner))
    if inner_key is None:
        return None
    data = [
        (shared_data[key].dtype.str, shared_data[key].ndim, shared_data[key].flags.writeable) for key in shared_keys
    ]
    parts = (CALLBACK_VERSION, kind, inner_key, sizes, data, nutpie.__version__, numba.__version__)
    return "nutpie_" + hashlib.sha256(repr(parts).encode()).hexdigest()


def _from_source(source: str, name: str, names: dict, key: str):
    import numba
    from pytensor.link.numba.cache import compile_numba_function_src

    # __name__: numba pickles the callback's environment by the module of its globals
    namespace = {"__name__": __name__, "numba": numba, "np": np, **names}
    return compile_numba_function_src(source, name, namespace, cache_key=key)
