"""``Dim``: a named dimension of a tensor template, static (a size) or dynamic (per-sequence lengths)."""

from __future__ import annotations

BATCH = "batch"
SPATIAL = "spatial"
FEATURE = "feature"
KINDS = (BATCH, SPATIAL, FEATURE)


class Dim:
    """A named dimension: ``size`` is an int when static, None when dynamic.

    A dynamic dim's per-sequence lengths (a [B] int32 tensor) exist only once a batch is run;
    they travel in ``Data.dyn_sizes`` keyed by the Dim. Dims compare by identity: two layers
    share a dim when they pass the same object on. ``matches`` is the looser test used when
    aligning tensors: static dims of the same kind and size are interchangeable.
    """

    __slots__ = ("name", "size", "kind")

    class Types:
        """RETURNN's names of the dim kinds (``Dim.Types.Spatial``)."""

        Batch = BATCH
        Spatial = SPATIAL
        Feature = FEATURE

    def __init__(self, size: int | None, name: str, *, kind: str = SPATIAL):
        if kind not in KINDS:
            raise ValueError(f"Dim {name!r}: kind must be one of {KINDS}, got {kind!r}")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise ValueError(f"Dim {name!r}: size must be a non-negative int or None, got {size!r}")
        self.name = name
        self.size = size
        self.kind = kind

    @property
    def is_dynamic(self) -> bool:
        """Whether the size varies per batch (a time dim or other sequence-length dim)."""
        return self.size is None

    @property
    def dimension(self) -> int | None:
        """RETURNN's name for ``size``."""
        return self.size

    @property
    def description(self) -> str:
        """RETURNN's name for ``name``."""
        return self.name

    @property
    def is_batch(self) -> bool:
        """Whether this is the batch dim."""
        return self.kind == BATCH

    def matches(self, other: Dim) -> bool:
        """Same dim, or both static with the same kind and size (interchangeable when aligning)."""
        if self is other:
            return True
        return self.size is not None and self.kind == other.kind and self.size == other.size and not self.is_batch

    def describe(self) -> str:
        """Short form for error messages: ``'out:feature'(3)`` or ``'data:time'``."""
        return f"{self.name!r}" if self.size is None else f"{self.name!r}({self.size})"

    def __repr__(self) -> str:
        return f"Dim({self.name!r}, {self.size}, kind={self.kind!r})"


batch_dim = Dim(None, "batch", kind=BATCH)


class BeamBatchDim(Dim):
    """The batch dim inside a beam search: each sequence of ``base`` (the batch outside) ``beam_size`` times,
    hypothesis k of sequence b at index ``b * beam_size + k``. ``choice`` names the choice layer searching."""

    __slots__ = ("base", "beam_size", "choice")

    def __init__(self, base: Dim, beam_size: int, choice: str):
        super().__init__(None, f"{base.name}*beam{beam_size}", kind=BATCH)
        self.base, self.beam_size, self.choice = base, beam_size, choice

    def describe(self) -> str:
        return f"B*beam({self.beam_size}, {self.choice!r})"


def unbeamed(dim: Dim) -> Dim:
    """The batch dim outside every beam (``dim`` itself when it is not a beam's)."""
    while isinstance(dim, BeamBatchDim):
        dim = dim.base
    return dim


def feature_dim(size: int | None, name: str) -> Dim:
    """A new feature dim (the output dim of a layer that maps features)."""
    return Dim(size, name, kind=FEATURE)


def spatial_dim(size: int | None, name: str) -> Dim:
    """A new spatial dim (time or another sequence-like axis)."""
    return Dim(size, name, kind=SPATIAL)


# RETURNN's constructors, argument order as there: description first.
def FeatureDim(description: str, dimension: int | None) -> Dim:  # noqa: N802 (RETURNN's name)
    """A new feature dim, as RETURNN's ``FeatureDim("hidden", 512)``."""
    return Dim(dimension, description, kind=FEATURE)


def SpatialDim(description: str, dimension: int | None = None) -> Dim:  # noqa: N802 (RETURNN's name)
    """A new spatial dim, dynamic unless ``dimension`` is given, as RETURNN's ``SpatialDim("time")``."""
    return Dim(dimension, description, kind=SPATIAL)


# RETURNN's marker of "one step of a loop" (a rec layer's axis); a static spatial dim of size 1.
single_step_dim = Dim(1, "single-step", kind=SPATIAL)
