"""The model calls: one module per graph kind, behind the `base.Runner` protocol."""
