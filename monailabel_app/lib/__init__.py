from .infer_synthesis import SynthesisInferTask

__all__ = ["SynthesisInferTask"]
