"""uniham: universal DFT Hamiltonians in a localized atomic-orbital basis.

Data flows one way: structure -> basis -> DFT engine / readers -> Hamiltonian -> properties.
Units everywhere in the public API and files: eV and Angstrom.

``uniham.predict(atoms, model=...)`` and ``uniham.load(path)`` (:mod:`uniham.api`) return a result with
``.bands()``, ``.dos()``, ``.optics()`` and ``.write()``; they import the heavy parts only when called.
"""
from uniham.errors import UnihamError

__version__ = "0.1.3"
__all__ = ["UnihamError", "__version__", "load", "predict"]


def predict(structure, model=None, fermi: bool = True):
    """See :func:`uniham.api.predict`."""
    from uniham.api import predict as _predict

    return _predict(structure, model, fermi)


def load(path, fmt: str | None = None):
    """See :func:`uniham.api.load`."""
    from uniham.api import load as _load

    return _load(path, fmt)
