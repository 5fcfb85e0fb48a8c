"""CMRDiff MONAI bundle: the components MONAI lacks (see configs/ for how they are wired)."""
__version__ = "0.19.0"  # = configs/metadata.json "version" (tests/test_bundle.py checks)
