"""ASGI entry point: HTTP (pages, admin, bridge endpoint) and, as the screen grows, WebSockets."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.crm.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

application = ProtocolTypeRouter({"http": django_asgi_app})
