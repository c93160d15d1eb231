"""Project exception types. Every bad input ends in one of these, with a message naming the problem."""


class MMFreeError(Exception):
    """Base class for every error mmfree raises on bad input or a failing device."""


class FormatError(MMFreeError):
    """A packed model or checkpoint file is corrupt, truncated, of another version or inconsistent."""


class ConfigError(MMFreeError):
    """A model configuration that mmfree cannot run (unsupported option, shapes that do not fit)."""
