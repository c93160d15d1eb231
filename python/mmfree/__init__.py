"""mmfree: ternary MatMul-free language models on Xilinx FPGA boards through PYNQ.

Modules (torch is only needed by ``model``, ``convert`` from a torch checkpoint and ``train``):

- ``config``   HGRNBitConfig: the released ``config.json``, torch-free.
- ``errors``   MMFreeError and friends: one exception type for bad input.
- ``model``    pure-PyTorch reference of the released HGRNBit inference (float).
- ``packed``   the packed model format (one .safetensors file), pack/unpack of ternary codes.
- ``convert``  Hugging Face checkpoint folder -> packed file, streaming.
- ``golden``   numpy golden model: the hardware's arithmetic, bit for bit.
"""

__version__ = "0.1.0"

from .errors import MMFreeError, FormatError  # noqa: F401
