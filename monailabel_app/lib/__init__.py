"""The CMRDiff MONAI Label app's library: ``infer_synthesis`` (the InferTask; needs monailabel) and ``validation``
(the request checks; plain Python, unit-tested in the project's environment)."""
