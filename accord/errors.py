"""User-facing errors: one clear line, no traceback unless ``--debug``.

Anything a user can cause (bad config, bad env output, bad checkpoint) raises a subclass of
:class:`AccordError`; the CLI prints ``error: <message>`` and exits non-zero. Bugs stay ordinary
exceptions so they keep their traceback.
"""


class AccordError(Exception):
    """Base class for errors the user can fix; the message says what was wrong and what to do."""


class ConfigError(AccordError):
    """The configuration is invalid (unknown key, wrong type, incompatible choices)."""


class EnvError(AccordError):
    """An environment returned malformed output (wrong shape, NaN, wrong dtype)."""


class CheckpointError(AccordError):
    """A checkpoint is missing, corrupt, truncated or from another program."""


class RunStoreError(AccordError):
    """The run store cannot be read or written (missing run, full disk, permissions)."""


class ExportError(AccordError):
    """A policy cannot be exported (bad options, missing packages, ONNX parity failure)."""
