from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils.translation import gettext_lazy as _

from callcenter import numbers
from callcenter.activities.models import ActivityType
from callcenter.resources.models import CallCenterSettings, Resource, check_address_ports

ADMIN_OPTION_FIELDS = [
    "extension",
    "cc_active",
    "service_address",
    "service_port",
    "internal_address",
    "internal_port",
    "notify_new_call",
    "notification_seconds",
]
OWN_OPTION_FIELDS = ["notify_new_call", "notification_seconds"]


def use_model_bounds(form: forms.ModelForm) -> None:
    """Give each whole-number field the range its model field validates. A positive-integer model field alone gives
    its form field a minimum of 0: -1 would be told "at least 0", and then 0 "at least 1"."""
    for name, field in form.fields.items():
        if not isinstance(field, forms.IntegerField):
            continue
        model_validators = form._meta.model._meta.get_field(name).validators
        lows = [v.limit_value for v in model_validators if isinstance(v, MinValueValidator)]
        highs = [v.limit_value for v in model_validators if isinstance(v, MaxValueValidator)]
        if not lows and not highs:
            continue
        field.validators = [v for v in field.validators if not isinstance(v, MinValueValidator | MaxValueValidator)]
        if lows:
            field.min_value = max(lows)
            field.validators.append(MinValueValidator(field.min_value))
            field.widget.attrs["min"] = field.min_value
        if highs:
            field.max_value = min(highs)
            field.validators.append(MaxValueValidator(field.max_value))
            field.widget.attrs["max"] = field.max_value


class CallCenterOptionsForm(forms.ModelForm):
    """S-2. An administrator edits every field; a resource on its own page only S-2.6 and S-2.7 (the others are shown
    read-only: PBX links are for those who know how the PBX is set up)."""

    class Meta:
        model = Resource
        fields = ADMIN_OPTION_FIELDS

    def __init__(self, *args: Any, full_access: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        use_model_bounds(self)
        if not full_access:
            for name in ADMIN_OPTION_FIELDS:
                if name not in OWN_OPTION_FIELDS:
                    self.fields[name].disabled = True
        for name in ("service_address", "internal_address"):
            self.fields[name].widget.attrs["autocomplete"] = "off"
        self.fields["extension"].widget.attrs.update({"inputmode": "numeric", "pattern": r"\d{1,8}"})

    def clean_extension(self) -> str | None:
        value = self.cleaned_data.get("extension")
        if value in (None, ""):
            return None
        value = str(value).strip()
        return value

    def clean_service_address(self) -> str:
        return str(self.cleaned_data["service_address"]).strip()

    def clean_internal_address(self) -> str:
        return str(self.cleaned_data["internal_address"]).strip()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors:
            try:
                check_address_ports(
                    cleaned.get("service_address", ""),
                    cleaned.get("service_port"),
                    cleaned.get("internal_address", ""),
                    cleaned.get("internal_port"),
                )
            except forms.ValidationError as exc:
                self.add_error(None, exc)
        return cleaned


class CallCenterSettingsForm(forms.ModelForm):
    """S-3, administrators only."""

    class Meta:
        model = CallCenterSettings
        fields = [
            "phone_system",
            "digits_to_scan",
            "outgoing_activity_type",
            "incoming_activity_type",
            "auto_show_screen",
            "default_activity_type",
            "create_call_when_answered",
            "call_prefix",
            "internal_digits",
            "auto_open_activity",
            "update_from_internal_calls",
            "campaign_type",
            "insert_campaign_items",
            "phone_region",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        use_model_bounds(self)
        active_types = ActivityType.objects.filter(active=True)
        for name in ("outgoing_activity_type", "incoming_activity_type", "default_activity_type"):
            field = self.fields[name]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = active_types
            field.empty_label = _("(none)")
        self.fields["call_prefix"].widget.attrs.update({"inputmode": "numeric", "pattern": r"\d*"})

    def clean_call_prefix(self) -> str:
        value = str(self.cleaned_data.get("call_prefix") or "").strip()
        if value and not (value.isascii() and value.isdigit()):
            raise forms.ValidationError(_("The call prefix may hold digits only, such as 0."))
        return value

    def clean_phone_region(self) -> str:
        value = str(self.cleaned_data.get("phone_region") or "").strip().upper()
        if not numbers.is_supported_region(value):
            raise forms.ValidationError(
                _("%(region)s is not a known country code; use two letters such as GR.") % {"region": value[:10]}
            )
        return value
