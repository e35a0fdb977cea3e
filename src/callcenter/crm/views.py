from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from callcenter.calls.views import screen
from callcenter.crm import login
from callcenter.resources.models import CallCenterSettings
from callcenter.resources.permissions import is_administrator, resource_of


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The Call Center screen for resources and administrators; for anyone else, a page saying what is missing."""
    resource = resource_of(request.user)
    if resource is not None or is_administrator(request.user):
        return screen(request)
    return render(
        request,
        "crm/home.html",
        {"resource": resource, "settings": CallCenterSettings.load()},
    )


class _Throttled:
    """The login forms' wrong-password error, or, when the throttle locked this log-in, when to try again."""

    request: HttpRequest | None

    def get_invalid_login_error(self) -> ValidationError:
        until = getattr(self.request, login.LOCKED_ATTRIBUTE, None)
        if until is None:
            return super().get_invalid_login_error()  # type: ignore[misc]
        return ValidationError(
            _("Too many failed log-ins for this account from your address. Try again at %(time)s (in %(minutes)s "
              "minutes).")
            % {"time": timezone.localtime(until).strftime("%H:%M"), "minutes": login.minutes_left(until)},
            code="locked",
        )


class LoginForm(_Throttled, AuthenticationForm):
    pass


class AdminLoginForm(_Throttled, AdminAuthenticationForm):
    pass
