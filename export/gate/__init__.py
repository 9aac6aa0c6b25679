"""What both gates share: the PyTorch reference, the checks and their numbers, held-out text,
and the gate's settings and result."""
