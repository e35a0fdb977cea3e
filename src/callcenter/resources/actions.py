"""Every write to resources and to the call-center settings goes through here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.forms.models import model_to_dict

from callcenter.calls.actions import rekey_calls
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
        calls = rekey_calls(settings.digits_to_scan)
        log.info("digits to scan %s -> %s: %d phone and %d call match keys recomputed", before.digits_to_scan,
                 settings.digits_to_scan, changed, calls)
    return settings


@transaction.atomic
def update_call_center_settings(**values: Any) -> CallCenterSettings:
    """Change the named S-3 settings (model instances or primary keys for the activity and campaign types) through the
    settings form, so the same validation applies as on the page. Raises ValidationError with the form's messages.
    Writes nothing when every value is already so."""
    instance = CallCenterSettings.load()
    fields = list(CallCenterSettingsForm.Meta.fields)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"not call-center settings: {', '.join(unknown)}")
    data = model_to_dict(instance, fields=fields)
    for name, value in values.items():
        data[name] = getattr(value, "pk", value)
    data = {name: "" if value is None else value for name, value in data.items()}
    form = CallCenterSettingsForm(data, instance=instance)
    if not form.is_valid():
        raise ValidationError({name: list(errors) for name, errors in form.errors.items()})
    if not form.has_changed():
        return instance
    return save_call_center_settings(form)


@transaction.atomic
def ensure_resource(
    username: str,
    *,
    password: str | None = None,
    first_name: str = "",
    last_name: str = "",
    email: str = "",
    is_administrator: bool = False,
    extension: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Resource:
    """The user ``username`` and its resource, created or brought to the given names, role, extension and S-2
    options (model field names: cc_active, service_address, ...). An administrator is also Django staff and
    superuser, for the admin site. The password is set only when it differs. Rows already so are not written."""
    user_model = get_user_model()
    user = user_model.objects.select_for_update().filter(username=username).first()
    if user is None:
        user = user_model(username=username)
    wanted_user = {"first_name": first_name, "last_name": last_name, "email": email,
                   "is_staff": is_administrator, "is_superuser": is_administrator, "is_active": True}
    user_changed = user.pk is None or any(getattr(user, key) != value for key, value in wanted_user.items())
    for key, value in wanted_user.items():
        setattr(user, key, value)
    if password is not None and not user.check_password(password):
        user.set_password(password)
        user_changed = True
    elif user.pk is None:
        user.set_unusable_password()
    if user_changed:
        user.full_clean(exclude=["password"])
        user.save()

    resource = Resource.objects.select_for_update().filter(user=user).first() or Resource(user=user)
    wanted = {"is_administrator": is_administrator, "extension": extension, **(options or {})}
    unknown = sorted(name for name in wanted if name not in {f.name for f in Resource._meta.fields})
    if unknown:
        raise ValueError(f"not resource fields: {', '.join(unknown)}")
    if resource.pk is None or any(getattr(resource, key) != value for key, value in wanted.items()):
        for key, value in wanted.items():
            setattr(resource, key, value)
        resource.full_clean()
        resource.save()
        log.info("resource %s (extension %s) saved", username, extension or "none")
    return resource
