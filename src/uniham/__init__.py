"""uniham: universal DFT Hamiltonians in a localized atomic-orbital basis.

Data flows one way: structure -> basis -> DFT engine / readers -> Hamiltonian -> properties.
Units everywhere in the public API and files: eV and Angstrom.
"""
from uniham.errors import UnihamError

__version__ = "0.1.3"
__all__ = ["UnihamError", "__version__"]
