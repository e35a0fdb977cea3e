from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.i18n import set_language

from callcenter.calls import bridge_api
from callcenter.crm import views
from callcenter.resources import views as resource_views

admin.site.login_form = views.AdminLoginForm  # the admin's log-in is throttled too (crm/login.py)

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(authentication_form=views.LoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/setlang/", set_language, name="set_language"),
    path("callcenter/", include("callcenter.calls.urls")),
    path("activities/", include("callcenter.activities.urls")),
    path("resources/", include("callcenter.resources.urls")),
    path("settings/call-center/", resource_views.call_center_settings, name="call_center_settings"),
    path("bridge/v1/events", bridge_api.events, name="bridge_events"),
    path("bridge/v1/health", bridge_api.health, name="bridge_health"),
    path("admin/", admin.site.urls),
]
