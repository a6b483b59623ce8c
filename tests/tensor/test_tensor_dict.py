"""RETURNN's tensor names: Tensor, TensorDict, FeatureDim, SpatialDim, single_step_dim, DimensionTag, dim_tags."""

from __future__ import annotations

import numpy as np
import pytest

from returnn.errors import ConfigError
from returnn.tensor import Data, Dim, FeatureDim, SpatialDim, Tensor, TensorDict, batch_dim, single_step_dim
from returnn.tensor.extern_data import ExternData
from returnn.tf.util.data import DimensionTag


def test_returnn_dim_constructors_take_description_first():
    feat, time = FeatureDim("hidden", 512), SpatialDim("time")
    assert (feat.kind, feat.dimension, feat.description) == ("feature", 512, "hidden")
    assert time.kind == "spatial" and time.is_dynamic and SpatialDim("window", 3).size == 3
    tag = DimensionTag(kind=DimensionTag.Types.Spatial, description="enc-time")
    assert tag.kind == Dim.Types.Spatial == "spatial" and tag.name == "enc-time" and tag.size is None
    assert single_step_dim.size == 1 and Tensor is Data


def test_extern_data_dim_tags_is_returnns_older_name_of_dims():
    time, feat = SpatialDim("time"), FeatureDim("feat", 9)
    data = ExternData({"data": {"dim_tags": [batch_dim, time, feat]}})["data"]
    assert data.dims == (batch_dim, time, feat) and data.time_dim is time and data.dim == 9
    with pytest.raises(ConfigError, match=r'extern_data\["data"\]: has both "dims" and "dim_tags"'):
        ExternData({"data": {"dims": [batch_dim, time], "dim_tags": [batch_dim, time]}})


def test_tensor_dict_from_options_and_raw_round_trip():
    td = TensorDict({"data": {"dim": 3}, "classes": {"dim": 5, "sparse": True}})
    assert list(td) == ["data", "classes"] and td["classes"].sparse_dim.size == 5
    time = td["data"].time_dim
    assert time in td.all_dims() and td["classes"].sparse_dim in td.all_dims()
    values = np.zeros([2, 4, 3], np.float32)
    td.assign_from_raw_tensor_dict_({"data": values, "data:seq_len": np.array([4, 2]),
                                     "classes": np.zeros([2, 4], np.int32), "classes:seq_len": np.array([4, 1])})
    raw = td.as_raw_tensor_dict()
    assert raw["data"] is values and list(raw["data:seq_len"]) == [4, 2] and list(raw["classes:seq_len"]) == [4, 1]
    template = td.copy_template()
    assert template["data"].tensor is None and td["data"].tensor is values
    td.reset_content()
    assert td["data"].tensor is None and td["data"].dims == template["data"].dims
    with pytest.raises(KeyError, match="no key 'targets'; keys: data, classes"):
        td["targets"]
