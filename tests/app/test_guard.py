"""demo/guard.py's work kept off Gradio's event loop: a new session makes no block configs until
one is needed, and then the same configs as Gradio's own sessions."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gradio.state_holder import SessionState

from demo.guard import LazyBlockConfigs, lazy_session_configs
from demo.ui import build_demo
from generation.serve import ServeConfig, Server
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def demo(engine):
    server = Server(engine, ServeConfig())
    yield build_demo(server)
    server.loop.close()


def gradio_session(demo) -> SessionState:
    """A session as Gradio 6.17 makes it: every block's config at once."""
    session = SessionState.__new__(SessionState)
    init = SessionState.__init__
    getattr(init, "gradio_init", init)(session, demo)
    return session


def test_a_new_session_makes_no_block_config(demo):
    lazy_session_configs()
    lazy_session_configs()  # once is enough: a second call changes nothing
    session = SessionState(demo)
    assert isinstance(session.config_values, LazyBlockConfigs)
    assert dict.__len__(session.config_values) == 0


def test_a_lazy_session_lists_and_updates_the_configs_gradio_makes(demo):
    lazy_session_configs()
    lazy, eager = SessionState(demo), gradio_session(demo)
    assert not isinstance(eager.config_values, LazyBlockConfigs)
    assert len(eager.config_values) > 50  # the demo's ~100 blocks
    assert set(vars(lazy)) == set(vars(eager))
    block = next(k for k, c in eager.config_values.items() if "value" in c.get("props", {}))
    lazy._update_value_in_config(block, "updated")
    assert dict.__len__(lazy.config_values) == 1  # only the block updated
    assert lazy.config_values[block]["props"]["value"] == "updated"
    eager._update_value_in_config(block, "updated")
    assert list(lazy.components) == list(eager.components)  # what a deep link saves
    assert dict(lazy.config_values.items()) == eager.config_values


def test_import_matplotlib_now_leaves_nothing_for_the_first_event():
    code = ("import sys; from demo.guard import import_matplotlib_now; import_matplotlib_now(); "
            "print(any(m.startswith('matplotlib') for m in sys.modules), "
            "'matplotlib.pyplot' in sys.modules or 'matplotlib' not in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert out == ["False", "True"]
    else:
        assert out == ["True", "True"]  # pyplot too: the backend was resolved
