"""``TensorDict``: named ``Data`` (RETURNN's ``Tensor``) values, as RETURNN's ``returnn.tensor.TensorDict``."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from returnn.tensor.data import Data
from returnn.tensor.dim import Dim
from returnn.tensor.extern_data import data_from_opts, size_keys


class TensorDict:
    """``data``: key -> Data. ``update`` takes Data, extern_data-style option dicts or another TensorDict."""

    def __init__(self, data: Mapping[str, Data | Mapping[str, Any]] | TensorDict | None = None):
        self.data: dict[str, Data] = {}
        if data is not None:
            self.update(data)

    def update(self, data: Mapping[str, Data | Mapping[str, Any]] | TensorDict) -> None:
        """Add or replace entries; an options dict is read like an ``extern_data`` entry."""
        items = data.data if isinstance(data, TensorDict) else data
        for key, value in items.items():
            self.data[key] = value if isinstance(value, Data) else data_from_opts(key, value)

    def __getitem__(self, key: str) -> Data:
        if key not in self.data:
            raise KeyError(f"TensorDict has no key {key!r}; keys: {', '.join(self.data) or 'none'}")
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def keys(self):
        return self.data.keys()

    def items(self):
        return self.data.items()

    def copy_template(self) -> TensorDict:
        """The templates alone (no tensors, no seq lengths)."""
        return TensorDict({key: value.copy_template() for key, value in self.data.items()})

    def reset_content(self) -> None:
        """Drop the tensors and seq lengths, keep the templates."""
        self.data = {key: value.copy_template() for key, value in self.data.items()}

    def all_dims(self) -> list[Dim]:
        """Every dim of every entry (sparse vocab dims included), each once, in order of appearance."""
        dims: dict[int, Dim] = {}
        for value in self.data.values():
            for dim in (*value.dims, *([value.sparse_dim] if value.sparse_dim is not None else [])):
                dims.setdefault(id(dim), dim)
        return list(dims.values())

    def as_raw_tensor_dict(self) -> dict[str, Any]:
        """The tensors by key and the seq lengths of their dynamic dims under the batch keys
        (``"data:seq_len"``, ``"data:size2"``): the form a batch is fed in."""
        raw: dict[str, Any] = {}
        for key, value in self.data.items():
            raw[key] = value.tensor
            for dim, size_key in size_keys(key, value).items():
                raw[size_key] = value.dyn_sizes.get(dim)
        return raw

    def assign_from_raw_tensor_dict_(self, raw: Mapping[str, Any]) -> None:
        """Set tensors and seq lengths from the form ``as_raw_tensor_dict`` gives."""
        for key, value in list(self.data.items()):
            sizes = {dim: raw[size_key] for dim, size_key in size_keys(key, value).items() if size_key in raw}
            self.data[key] = value.replace(tensor=raw[key], dyn_sizes=sizes)

    def __repr__(self) -> str:
        return f"TensorDict({list(self.data.values())!r})"
