"""space package."""
