"""Errors a user can cause. The CLI maps each to exit code 2 and one clear line, never a traceback."""


class EdgeBertError(Exception):
    """Base class: the message says what went wrong and what to do next."""


class BundleError(EdgeBertError):
    """A bundle is missing, corrupt, from an unknown schema, or fails its checksums."""


class ProfileError(EdgeBertError):
    """A target profile is unknown or malformed."""


class InputError(EdgeBertError):
    """Bad user input: texts, paths, options."""


class ConversionError(EdgeBertError):
    """The model cannot be converted (unsupported architecture/task, export failed its parity check)."""
