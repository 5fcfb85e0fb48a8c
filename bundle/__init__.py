"""CMRDiff MONAI bundle: the components MONAI lacks (see configs/ for how they are wired)."""
__version__ = "0.1.0"
