from django.urls import path

from callcenter.calls.consumers import CallCenterConsumer

websocket_urlpatterns = [
    path("ws/callcenter/", CallCenterConsumer.as_asgi()),
]
