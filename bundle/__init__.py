"""CMRDiff MONAI bundle: the components MONAI lacks (see configs/ for how they are wired)."""
__version__ = "0.18.1"  # = configs/metadata.json "version" (tests/test_bundle.py checks)
