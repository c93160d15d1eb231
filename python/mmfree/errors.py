"""Project exception types. Every bad input ends in one of these, with a message naming the problem."""


class MMFreeError(Exception):
    """Base class for every error mmfree raises on bad input or a failing device."""


class FormatError(MMFreeError):
    """A packed model or checkpoint file is corrupt, truncated, of another version or inconsistent."""


class ConfigError(MMFreeError):
    """A model configuration that mmfree cannot run (unsupported option, shapes that do not fit)."""


class DeviceError(MMFreeError):
    """The accelerator (board or emulated overlay) failed: bus error, bad state, missing IP."""


class KernelTimeout(DeviceError):
    """A kernel call did not finish in time; the message names the op and the layer."""


class BusError(DeviceError):
    """A kernel address register pointed outside every buffer (what a DECERR is on the board)."""


class ModelTooLarge(ConfigError):
    """A model does not fit the overlay's compiled maxima or the board's CMA memory."""


class OutputError(MMFreeError):
    """A file could not be written (full disk, no permission, an output that would overwrite an input).

    Whenever this is raised, the temporary file is gone and an existing output is untouched."""
