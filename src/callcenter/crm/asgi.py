"""ASGI entry point: HTTP (pages, admin, bridge endpoint) and the Call Center screen's WebSocket.

The WebSocket takes the session cookie (AuthMiddlewareStack) and only from pages of this site (the Origin must be one
of ALLOWED_HOSTS), so another site cannot open a live channel with a user's cookie.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.crm.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from callcenter.calls.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
