"""``extern_data`` from the config: RETURNN's dict form, or the older ``num_inputs`` / ``num_outputs``."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import tensorflow as tf

from returnn.errors import ConfigError
from returnn.log import logger
from returnn.tensor.data import Data
from returnn.tensor.dim import FEATURE, SPATIAL, Dim, batch_dim

_KNOWN_OPTS = (
    "dim", "shape", "sparse", "dtype", "available_for_inference", "time_dim_axis", "feature_dim_axis",
    "batch_dim_axis", "dims", "dim_tags", "sparse_dim",
)
_UNSET: Any = object()


def seq_len_key(key: str, axis: int | None = None) -> str:
    """Batch key of the lengths of ``key``'s time dim (``"data:seq_len"``), or of another dynamic axis."""
    return f"{key}:seq_len" if axis is None else f"{key}:size{axis}"


def size_keys(key: str, template: Data) -> dict[Dim, str]:
    """Batch keys of the lengths of each dynamic dim of extern data ``key``."""
    return {dim: seq_len_key(key) if dim is template.time_dim else seq_len_key(key, axis)
            for axis, dim in enumerate(template.dims) if dim.is_dynamic and not dim.is_batch}


def batch_feed(batch: Any) -> Mapping[str, Any]:
    """A batch as one flat mapping ``{key: array, "key:seq_len": lengths}``.

    Takes such a mapping as it is, or an object with ``data`` and ``seq_lens`` dicts by key
    (``returnn.datasets.batching.Batch``).
    """
    if isinstance(batch, Mapping):
        return batch
    if hasattr(batch, "data") and hasattr(batch, "seq_lens"):
        feed = dict(batch.data)
        feed.update({seq_len_key(key): lens for key, lens in batch.seq_lens.items()})
        return feed
    raise TypeError(f"a batch must be a dict of arrays or have .data and .seq_lens, got {type(batch).__name__}")


def _data_from_dims(key: str, opts: Mapping[str, Any]) -> Data:
    """New-style entry: ``{"dims": [batch_dim, time_dim, feature_dim], "sparse_dim": vocab}``."""
    dims = tuple(opts["dims"])
    if not all(isinstance(dim, Dim) for dim in dims):
        raise ConfigError(f'extern_data["{key}"]["dims"]: expected a list of Dim objects, got {dims!r}')
    sparse_dim = opts.get("sparse_dim")
    if sparse_dim is not None and not isinstance(sparse_dim, Dim):
        raise ConfigError(f'extern_data["{key}"]["sparse_dim"]: expected a Dim (the vocab) or None, got {sparse_dim!r}')
    dtype = _checked_dtype(key, opts.get("dtype", "int32" if sparse_dim is not None else "float32"))
    return Data(key, dims, dtype=dtype, sparse_dim=sparse_dim,
                available_for_inference=bool(opts.get("available_for_inference", True)))


def _checked_dtype(key: str, dtype: Any) -> str:
    """A TensorFlow dtype name ("float32", "int32", ...), as the config gave it."""
    try:
        tf.dtypes.as_dtype(dtype)
    except TypeError:
        raise ConfigError(f'extern_data["{key}"]["dtype"]: expected a dtype name like "float32" or "int32", '
                          f"got {dtype!r}") from None
    return dtype


def _check_axis(key: str, opts: Mapping[str, Any], name: str, ndim: int) -> int | None:
    """An axis option counted with the batch axis (0): None or 1 .. ndim."""
    value = opts[name]
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= ndim:
        raise ConfigError(f'extern_data["{key}"]["{name}"]: expected None or an axis in 1..{ndim}, got {value!r}')
    return value


def data_from_opts(key: str, opts: Mapping[str, Any]) -> Data:
    """One ``extern_data`` entry as a ``Data`` template; errors name the key and option."""
    if not isinstance(opts, Mapping):
        raise ConfigError(f'extern_data["{key}"]: expected a dict of options, got {opts!r}')
    unknown = sorted(set(opts) - set(_KNOWN_OPTS))
    if unknown:
        raise ConfigError(f'extern_data["{key}"]: unknown options {unknown}; known: {", ".join(_KNOWN_OPTS)}')
    if "dim_tags" in opts:  # RETURNN's older name of "dims"
        if "dims" in opts:
            raise ConfigError(f'extern_data["{key}"]: has both "dims" and "dim_tags" (its older name); keep one')
        opts = {("dims" if k == "dim_tags" else k): v for k, v in opts.items()}
    if "dims" in opts:
        return _data_from_dims(key, opts)
    if opts.get("batch_dim_axis", 0) != 0:
        raise ConfigError(f'extern_data["{key}"]["batch_dim_axis"]: only 0 is supported, got {opts["batch_dim_axis"]!r}')
    sparse = bool(opts.get("sparse", False))
    dim = opts.get("dim", _UNSET)
    if dim is not _UNSET and dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
        raise ConfigError(f'extern_data["{key}"]["dim"]: expected a positive int, got {dim!r}')
    shape = opts.get("shape", _UNSET)
    if shape is _UNSET:
        if dim is _UNSET:
            raise ConfigError(f'extern_data["{key}"]: needs "dim" or "shape"')
        shape = (None,) if sparse else (None, dim)
    shape = tuple(shape)
    if not sparse and shape and dim is not _UNSET and shape[-1] != dim:
        raise ConfigError(f'extern_data["{key}"]: "shape" {shape} ends in {shape[-1]}, but "dim" is {dim}')
    ndim = len(shape)
    default_time = 1 if (ndim >= 2 or (sparse and ndim == 1)) else None
    time_axis = _check_axis(key, opts, "time_dim_axis", ndim) if "time_dim_axis" in opts else default_time
    feature_axis = None
    if not sparse and ndim >= 1:
        feature_axis = _check_axis(key, opts, "feature_dim_axis", ndim) if "feature_dim_axis" in opts else ndim
    dims = [batch_dim]
    for axis, size in enumerate(shape, start=1):
        if axis == feature_axis:
            dims.append(Dim(size, f"{key}:feature", kind=FEATURE))
        else:
            dims.append(Dim(size, f"{key}:time" if axis == time_axis else f"{key}:spatial{axis}", kind=SPATIAL))
    sparse_dim = Dim(None if dim is _UNSET else dim, f"{key}:sparse-dim", kind=FEATURE) if sparse else None
    dtype = _checked_dtype(key, opts.get("dtype", "int32" if sparse else "float32"))
    return Data(key, tuple(dims), dtype=dtype, sparse_dim=sparse_dim,
                time_dim=None if time_axis is None else dims[time_axis],
                feature_dim=None if feature_axis is None else dims[feature_axis],
                available_for_inference=bool(opts.get("available_for_inference", True)))


def _checked_data_from_opts(key: str, opts: Any) -> Data:
    """``data_from_opts``, with any error of the Dim / Data constructors turned into a ConfigError naming ``key``."""
    try:
        return data_from_opts(key, opts)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f'extern_data["{key}"]: {exc}; expected one batch dim and dims with sizes that are '
                          f"ints >= 0 or None, given as {{\"dim\": ..., \"shape\": ...}} or {{\"dims\": [...]}}") from exc


def _num_entry(key: str, value: Any) -> dict[str, Any]:
    """``num_outputs`` entry: ``[dim, ndim]`` (ndim 1 = sparse, 2 = dense), optional dtype, or a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, 2 if key == "data" else 1]
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
        raise ConfigError(f'num_outputs["{key}"]: expected [dim, ndim] (ndim 1 = sparse, 2 = dense), got {value!r}')
    dim, ndim = value[0], value[1]
    if ndim not in (1, 2):
        raise ConfigError(f'num_outputs["{key}"]: ndim must be 1 (sparse) or 2 (dense), got {ndim!r}')
    opts: dict[str, Any] = {"dim": dim, "sparse": ndim == 1}
    if len(value) == 3:
        opts["dtype"] = value[2]
    return opts


def extern_data_from_num_outputs(num_inputs: Any, num_outputs: Any, *,
                                 sparse_input: bool = False) -> dict[str, dict[str, Any]]:
    """The older form as an ``extern_data`` dict: ``num_outputs`` dict or int; ``num_inputs`` = dim of "data"
    (sparse with ``sparse_input``) unless ``num_outputs`` has "data", which then says the dim and sparsity."""
    result: dict[str, dict[str, Any]] = {}
    if num_outputs is not None:
        if isinstance(num_outputs, Mapping):
            result = {key: _num_entry(key, value) for key, value in num_outputs.items()}
        else:
            result = {"classes": _num_entry("classes", num_outputs)}
    if num_inputs is not None:
        if "data" not in result:
            result["data"] = {"dim": num_inputs, "sparse": bool(sparse_input)}
        elif result["data"].get("dim") != num_inputs:
            raise ConfigError(f'config keys "num_inputs" {num_inputs!r} and num_outputs["data"] '
                              f'{num_outputs["data"]!r} disagree on the dim of "data"')
    return result


class ExternData(Mapping[str, Data]):
    """The extern data templates by key; ``from_config`` reads ``extern_data`` or ``num_inputs``/``num_outputs``."""

    def __init__(self, data: Mapping[str, Data | Mapping[str, Any]]):
        self._data = {key: value if isinstance(value, Data) else _checked_data_from_opts(key, value)
                      for key, value in data.items()}

    @classmethod
    def from_config(cls, config: Any) -> ExternData:
        """From a ``Config``-like object (``typed_value``) or a plain dict of config keys."""
        get = config.typed_value if hasattr(config, "typed_value") else config.get
        extern_data = get("extern_data", None)
        num_inputs, num_outputs = get("num_inputs", None), get("num_outputs", None)
        if extern_data is not None:
            if not isinstance(extern_data, Mapping):
                raise ConfigError(f'config key "extern_data": expected a dict of data keys, got {extern_data!r}')
            if num_inputs is not None or num_outputs is not None:
                logger.warning('config has "extern_data" and "num_inputs"/"num_outputs"; using "extern_data"')
            return cls(extern_data)
        if num_inputs is None and num_outputs is None:
            raise ConfigError('config needs "extern_data" (or the older "num_inputs" / "num_outputs")')
        return cls(extern_data_from_num_outputs(num_inputs, num_outputs,
                                                sparse_input=bool(get("sparse_input", False))))

    def __getitem__(self, key: str) -> Data:
        if key not in self._data:
            raise ConfigError(f'no extern data key {key!r}; extern_data has: {", ".join(sorted(self._data))}')
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ExternData({list(self._data.values())!r})"


def check_dataset_matches_extern_data(dataset: Any, extern_data: Mapping[str, Data], key: str) -> None:
    """Each extern data key the dataset provides must agree in dim and sparsity; a clear error names both."""
    for data_key in dataset.get_data_keys():
        if data_key not in extern_data:
            continue
        template = extern_data[data_key]
        want_dim = template.sparse_dim.size if template.sparse else template.dim
        have_dim, have_sparse = dataset.get_data_dim(data_key), dataset.is_data_sparse(data_key)
        if have_sparse != template.sparse or (want_dim is not None and have_dim != want_dim):
            raise ConfigError(
                f'config key "{key}": data key {data_key!r} has dim {have_dim} ({"sparse" if have_sparse else "dense"}), '
                f'but extern_data (or num_inputs/num_outputs) says dim {want_dim} ({"sparse" if template.sparse else "dense"})')
