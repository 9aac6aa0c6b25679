"""The two ways a `python -m space` command fails on purpose."""


class UserError(Exception):
    """Input the user must fix (a bad id, a missing token, a busy folder): one line, exit 2."""


class HubError(Exception):
    """The Hugging Face Hub refused or failed a step of a deploy: one line, exit 1."""
