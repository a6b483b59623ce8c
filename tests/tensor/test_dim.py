import pytest

from returnn.tensor.dim import BATCH, FEATURE, SPATIAL, Dim, batch_dim, feature_dim


def test_dim_static_and_dynamic():
    assert Dim(3, "f", kind=FEATURE).is_dynamic is False
    assert Dim(None, "t").is_dynamic is True
    assert batch_dim.is_batch and batch_dim.kind == BATCH


def test_dim_matches_same_object_or_equal_static_kind():
    t1, t2 = Dim(None, "t1"), Dim(None, "t2")
    assert t1.matches(t1) and not t1.matches(t2)
    assert feature_dim(3, "a").matches(feature_dim(3, "b"))
    assert not feature_dim(3, "a").matches(feature_dim(4, "b"))
    assert not feature_dim(3, "a").matches(Dim(3, "s", kind=SPATIAL))


def test_dim_rejects_bad_size_and_kind():
    with pytest.raises(ValueError, match="size"):
        Dim(-1, "x")
    with pytest.raises(ValueError, match="kind"):
        Dim(1, "x", kind="channel")


def test_dim_describe_names_size():
    assert feature_dim(3, "out:feature").describe() == "'out:feature'(3)"
    assert Dim(None, "data:time").describe() == "'data:time'"
