"""The textgen REST server: ``create_app()`` builds the Flask application.

Development: ``flask --app server run``.  Production: ``gunicorn -c server/gunicorn_conf.py
'server:create_app()'`` (see docs/SERVING.md).  The contract is /work/shared/api.md: endpoints
in :mod:`server.api`, :mod:`server.openai_api` and :mod:`server.chat_api` (OpenAI-compatible),
:mod:`server.tunes_api` (a model's tunes of ``form: ci``) and :mod:`server.web`, errors in
:mod:`server.errors` (kinds in :mod:`server.error_kinds`), API keys in :mod:`server.auth`, batching in
:mod:`server.batching`, settings from ``conf/server.yaml`` in :mod:`server.settings`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from flask import Flask

from server import auth, errors, metrics
from server.auth import ApiKeys
from server.metrics import Metrics
from server.registry import ModelRegistry
from server.settings import load_settings
from server.state import ServerState

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The application.

    ``test_config``: upper-case keys are Flask config (``TESTING``); lower-case keys override
    ``conf/server.yaml`` as a nested mapping, e.g. ``{"checkpoints": tmp, "batching": {"max_batch_size": 1}}``.
    """
    test_config = dict(test_config or {})
    overrides = {key: value for key, value in test_config.items() if key.islower()}
    flask_config = {key: value for key, value in test_config.items() if not key.islower()}
    settings = load_settings(overrides)

    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config.update(MAX_CONTENT_LENGTH=settings.limits.max_body_bytes, JSON_SORT_KEYS=False)
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.config.update(flask_config)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if not logging.getLogger("server").handlers and not app.testing:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    app_metrics = Metrics()
    keys = ApiKeys(settings.auth)  # before the registry starts anything: a bad key file stops here
    state = ServerState(settings=settings, metrics=app_metrics, registry=ModelRegistry(settings, app_metrics),
                        keys=keys)
    app.extensions["textgen"] = state

    errors.init_app(app)
    auth.init_app(app)
    metrics.init_app(app, app_metrics)
    from server import api, chat_api, openai_api, revise, tunes_api, web  # the views import the state helpers above

    app.register_blueprint(api.bp)
    app.register_blueprint(openai_api.bp)
    app.register_blueprint(chat_api.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(revise.bp)
    app.register_blueprint(tunes_api.bp)
    from server import paper_api  # the page's paper mode: its own module

    app.register_blueprint(paper_api.bp)
    if settings.preload:
        state.registry.preload()
    return app
