"""Every write to resources and to the call-center settings goes through here."""

from __future__ import annotations

import logging

from django.db import transaction

from callcenter.contacts.actions import rekey_phones
from callcenter.resources.forms import CallCenterOptionsForm, CallCenterSettingsForm
from callcenter.resources.models import CallCenterSettings, Resource

log = logging.getLogger(__name__)


@transaction.atomic
def save_call_center_options(form: CallCenterOptionsForm) -> Resource:
    resource: Resource = form.save()
    log.info("call-center options of %s changed: %s", resource, ", ".join(form.changed_data) or "nothing")
    return resource


@transaction.atomic
def save_call_center_settings(form: CallCenterSettingsForm) -> CallCenterSettings:
    before = CallCenterSettings.load()
    settings: CallCenterSettings = form.save()
    if before.digits_to_scan != settings.digits_to_scan:
        changed = rekey_phones(settings.digits_to_scan)
        log.info("digits to scan %s -> %s: %d match keys recomputed", before.digits_to_scan,
                 settings.digits_to_scan, changed)
    return settings
