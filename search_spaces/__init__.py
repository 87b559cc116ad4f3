"""Architecture IR, search spaces over it, and the builder from IR to PyTorch and ONNX."""
from search_spaces.errors import UserError
from search_spaces.ir import SE, Arch, ArchError, Block, Head, Stem
from search_spaces.references import load_arch

__all__ = ["SE", "Arch", "ArchError", "Block", "Head", "Stem", "UserError", "load_arch"]
