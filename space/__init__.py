"""Build the demo into a Hugging Face Space repository and deploy it (`python -m space`).

`space.bundle.build_bundle` writes the repository; `space.deploy.deploy` publishes it.
"""
