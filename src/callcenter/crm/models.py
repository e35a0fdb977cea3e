"""The CRM's own records: failed logins (for throttling, crm/login.py) and the error log an administrator reads on
CRM settings → Call center (S-4.5, S-3.1)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class LoginFailure(models.Model):
    """One wrong password (or a refused log-in) for ``username`` from ``address``; kept for the throttling window."""

    username = models.CharField(max_length=150)
    address = models.CharField(max_length=45)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["username", "address", "at"], name="loginfailure_pair"),
            models.Index(fields=["address", "at"], name="loginfailure_address"),
            models.Index(fields=["username", "at"], name="loginfailure_username"),
            models.Index(fields=["at"], name="loginfailure_at"),
        ]

    def __str__(self) -> str:
        return f"{self.username} from {self.address} at {self.at:%Y-%m-%d %H:%M:%S}"


class LoginSuccess(models.Model):
    """The last successful log-in of ``username`` from ``address``: a known place, never locked out by others."""

    username = models.CharField(max_length=150)
    address = models.CharField(max_length=45)
    at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["username", "address"], name="loginsuccess_pair")]

    def __str__(self) -> str:
        return f"{self.username} from {self.address} at {self.at:%Y-%m-%d %H:%M:%S}"


class ErrorLogEntry(models.Model):
    """One entry of the CRM's error log: written once when a problem appears or changes (not per heartbeat), and once
    when it is gone. ``subject`` names what it is about (``address:resource:5``); the text is built when shown, in
    the reader's language, from ``code`` and ``params``."""

    ADDRESS_MISMATCH = "address_mismatch"
    ADDRESS_AGREE = "address_agree"
    PHONE_SYSTEM_MISMATCH = "phone_system_mismatch"
    PHONE_SYSTEM_AGREE = "phone_system_agree"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    subject = models.CharField(max_length=200, db_index=True)
    code = models.CharField(max_length=40)
    params = models.JSONField(default=dict)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = _("error log entry")
        verbose_name_plural = _("error log")

    def __str__(self) -> str:
        return self.text()

    @property
    def is_problem(self) -> bool:
        return self.code in (self.ADDRESS_MISMATCH, self.PHONE_SYSTEM_MISMATCH)

    def text(self) -> str:
        params: dict[str, Any] = dict(self.params)
        if self.code == self.ADDRESS_MISMATCH:
            labels = {
                "service_address": gettext("Service address"),
                "service_port": gettext("Service port"),
                "callback_address": gettext("Internal service address"),
                "callback_port": gettext("Internal communication port"),
            }
            params["field"] = labels.get(str(params.get("field")), str(params.get("field")))
            return gettext(
                "Resource %(resource)s (extension %(extension)s) is not logged in: %(field)s is %(ours)s in its call "
                "center options but bridge %(bridge)s uses %(theirs)s; make them agree."
            ) % params
        if self.code == self.ADDRESS_AGREE:
            return gettext(
                "Resource %(resource)s: its addresses and ports agree with bridge %(bridge)s again."
            ) % params
        if self.code == self.PHONE_SYSTEM_MISMATCH:
            return gettext(
                "Bridge %(bridge)s reports the phone system %(theirs)s, but CRM settings → Call center says %(ours)s; "
                "make them the same."
            ) % params
        if self.code == self.PHONE_SYSTEM_AGREE:
            return gettext("Bridge %(bridge)s now reports the phone system set in the CRM.") % params
        return self.code

