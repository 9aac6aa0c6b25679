"""Build the demo into a Hugging Face Space repository and deploy it (`python -m space`)."""

from space.bundle import Bundle, BundleOptions, build_bundle
from space.deploy import DeployOptions, deploy
from space.errors import HubError, UserError

__all__ = [
    "Bundle",
    "BundleOptions",
    "DeployOptions",
    "HubError",
    "UserError",
    "build_bundle",
    "deploy",
]
