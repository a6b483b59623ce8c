"""Error types the framework raises for bad user input.

Every error says where (config key, layer, file), what was found and what was expected.
``rnn.py`` prints these as one paragraph without a traceback (``--debug`` shows it).
"""


class ReturnnError(Exception):
    """Base of all errors caused by user input (config, data, environment), not by bugs."""


class ConfigError(ReturnnError, ValueError):
    """A config file or config value is malformed, missing or of the wrong type."""


class ConfigTypeError(ConfigError, TypeError):
    """A config value has the wrong type for the getter that read it."""


class LayerConfigError(ReturnnError, ValueError):
    """A layer dict in ``network`` is invalid (unknown class, option, source, dim mismatch)."""


class LayerConstructionError(ReturnnError, RuntimeError):
    """Building or calling a layer failed; wraps the underlying error and names the layer."""


class DatasetError(ReturnnError, ValueError):
    """A dataset is misconfigured, or its files are missing or corrupt."""


class NativeOpBuildError(ReturnnError, RuntimeError):
    """Compiling or loading a native op failed; the message names the compiler command and a fallback."""


class TaskError(ReturnnError, ValueError):
    """The config asks for a task or backend this framework does not run."""
