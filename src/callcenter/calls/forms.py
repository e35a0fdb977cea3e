"""The Call Center screen's forms: they check what a browser sent (lengths, dates, ids that exist) and say what is
wrong in words; the rules themselves are in calls.actions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from callcenter import numbers
from callcenter.activities.models import ActivityType
from callcenter.calls.queries import MAX_SEARCH_LENGTH
from callcenter.campaigns.models import Campaign
from callcenter.contacts.models import PHONE_SLOTS, Contact


class FiltersForm(forms.Form):
    """S-4.1 From date (inclusive, default today) and S-4.3 Search."""

    from_date = forms.DateField(
        label=_("From date"), required=False, input_formats=["%Y-%m-%d"],
        error_messages={"invalid": _("Enter the from date as a date, such as 2024-05-01.")},
    )
    q = forms.CharField(
        label=_("Search"), required=False, max_length=MAX_SEARCH_LENGTH, strip=True,
        error_messages={"max_length": _("Search for at most %(limit_value)d characters.")},
    )
    cursor = forms.CharField(required=False, max_length=60)

    def filters(self) -> tuple[Any, str]:
        """(from date, search) as cleaned; today and '' for anything invalid."""
        data = self.cleaned_data if self.is_valid() else {}
        return data.get("from_date") or timezone.localdate(), data.get("q") or ""


class CampaignForm(forms.Form):
    campaign = forms.ModelChoiceField(
        label=_("Campaign"), queryset=Campaign.objects.all(), required=False,
        error_messages={"invalid_choice": _("That campaign does not exist any more; choose another.")},
    )


class ContactChoiceForm(forms.Form):
    contact = forms.ModelChoiceField(
        label=_("Caller"), queryset=Contact.objects.all(),
        error_messages={
            "required": _("Choose a contact first: search by name or number."),
            "invalid_choice": _("That contact no longer exists (it was deleted meanwhile); search again."),
        },
    )


class LinkForm(forms.Form):
    """S-4.17 with an existing contact: which, and what to do with the number when all slots are full."""

    contact = forms.ModelChoiceField(
        queryset=Contact.objects.all(),
        error_messages={
            "required": _("Choose a contact first: search by name or number."),
            "invalid_choice": _("That contact no longer exists (it was deleted meanwhile); search again."),
        },
    )
    replace_slot = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None,
        choices=[(slot, str(slot)) for slot in PHONE_SLOTS],
        error_messages={"invalid_choice": _("A contact has phone slots 1 to 4.")},
    )
    store_number = forms.ChoiceField(required=False, choices=[("yes", "yes"), ("no", "no")])

    def clean_store_number(self) -> bool:
        """Store the number unless the agent declined (the "link without storing" button says "no")."""
        return self.cleaned_data.get("store_number") != "no"


class NewContactForm(forms.Form):
    first_name = forms.CharField(label=_("first name"), max_length=100, required=False)
    last_name = forms.CharField(label=_("last name"), max_length=100, required=False)
    company = forms.CharField(label=_("company"), max_length=150, required=False)
    email = forms.EmailField(label=_("email"), required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        if not any((data.get(name) or "").strip() for name in ("first_name", "last_name", "company")):
            raise forms.ValidationError(_("Give the contact a first name, a last name or a company."))
        return data


class ActivityTypeForm(forms.Form):
    activity_type = forms.ModelChoiceField(
        label=_("Activity type"), queryset=ActivityType.objects.filter(active=True),
        error_messages={
            "required": _("Choose an activity type."),
            "invalid_choice": _("That activity type does not exist or is not active; choose another."),
        },
    )


class NumberForm(forms.Form):
    number = forms.CharField(
        label=_("Number"), required=False, max_length=numbers.MAX_RAW_LENGTH, strip=True,
        error_messages={"max_length": _("A phone number has at most %(limit_value)d characters.")},
    )


class BusyForm(forms.Form):
    busy = forms.TypedChoiceField(coerce=lambda value: value == "on", choices=[("on", "on"), ("off", "off")])


def selected_ids(values: list[str], limit: int = 10_000) -> list[int]:
    """The call ids of a Clear selected post; anything that is not a positive whole number is ignored."""
    ids = []
    for value in values[:limit]:
        if value.isascii() and value.isdigit() and len(value) <= 18:
            ids.append(int(value))
    return ids
