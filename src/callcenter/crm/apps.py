from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CrmConfig(AppConfig):
    name = "callcenter.crm"
    label = "crm"
    verbose_name = _("CRM")

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from callcenter.crm import login

        # Login throttling (crm/login.py): count each failure, and clear them on a successful log-in.
        user_login_failed.connect(login.on_login_failed, dispatch_uid="callcenter.crm.login.failed")
        user_logged_in.connect(login.on_logged_in, dispatch_uid="callcenter.crm.login.succeeded")
