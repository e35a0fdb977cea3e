"""ASGI entry point: HTTP (pages, admin, bridge endpoint) and the Call Center screen's WebSocket.

The WebSocket takes the session cookie (AuthMiddlewareStack) and only from pages of this site (the Origin must be one
of ALLOWED_HOSTS), so another site cannot open a live channel with a user's cookie.

The bridge endpoint (/bridge/v1/) is served without the pages' middleware: it is signed and CSRF-exempt and uses no
session, user, message or language, and under ASGI every such middleware still costs two thread hops per request
(MiddlewareMixin runs process_request and process_response through sync_to_async): about 2 ms and twenty hand-offs
between the event loop and the request thread for each batch of call events, on the path of every screen pop
(bench/screen_pop.py).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.crm.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from typing import Any  # noqa: E402

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

from callcenter.calls.routing import websocket_urlpatterns  # noqa: E402

BRIDGE_PREFIX = "/bridge/v1/"


class BridgeEndpointHandler(ASGIHandler):
    """Django's ASGI handler with no middleware (what load_middleware builds from an empty MIDDLEWARE)."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # Private in Django (not in its type stubs), as the rest of this method's names.
        get_response = getattr(self, "_get_response_async" if is_async else "_get_response")
        self._middleware_chain = convert_exception_to_response(get_response)


bridge_asgi_app = BridgeEndpointHandler()


async def http_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    handler = bridge_asgi_app if scope["path"].startswith(BRIDGE_PREFIX) else django_asgi_app
    await handler(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
