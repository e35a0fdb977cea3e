from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CallsConfig(AppConfig):
    name = "callcenter.calls"
    label = "calls"
    verbose_name = _("Calls")
