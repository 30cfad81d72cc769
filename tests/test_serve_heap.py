"""`tuneforge api` settles the heap before serving: no full garbage collection over the model's objects mid-request."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest

from tuneforge.serve import server


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settle_heap_freezes_what_lives_and_collects_what_does_not(unfrozen):
    collected = []
    garbage = _Cycle()
    gc.disable()  # keep the cycle alive until settle_heap runs
    try:
        import weakref

        ref = weakref.ref(garbage, lambda _: collected.append(True))
        del garbage
        server.settle_heap()
    finally:
        gc.enable()
    assert collected and ref() is None, "cyclic garbage must be collected before the freeze, not kept forever"
    assert gc.get_freeze_count() > 1000


def test_api_command_settles_the_heap_after_loading_and_before_serving(unfrozen, monkeypatch):
    import tuneforge.infer
    import tuneforge.serve.app

    seen = {}
    engine = SimpleNamespace(model_name="m", backend=SimpleNamespace())

    def fake_load(cfg, timing=None):
        seen["frozen_at_load"] = gc.get_freeze_count()
        return engine

    def fake_build(app, engine, host, port, log_level="info"):
        seen["frozen_at_serve"] = gc.get_freeze_count()
        return SimpleNamespace(run=lambda: None)

    monkeypatch.setattr(tuneforge.infer, "load_engine", fake_load)
    monkeypatch.setattr(tuneforge.serve.app, "create_app", lambda engine, settings: object())
    monkeypatch.setattr(server, "build_server", fake_build)
    import tuneforge.timing

    monkeypatch.setattr(tuneforge.timing, "loaded_line", lambda timing, engine: "Loaded")
    cfg = SimpleNamespace(server=SimpleNamespace(api_keys=None, api_host=None, api_port=8000, max_request_bytes=1 << 20,
                                                 request_timeout=None, api_media_dir=None))  # fmt: skip
    monkeypatch.delenv("API_KEY", raising=False)
    monkeypatch.delenv("API_HOST", raising=False)
    monkeypatch.delenv("API_PORT", raising=False)
    server.api_command(cfg)
    assert seen["frozen_at_load"] == 0
    assert seen["frozen_at_serve"] > 1000
