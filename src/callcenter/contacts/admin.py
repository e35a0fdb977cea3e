from django import forms
from django.contrib import admin
from django.utils.translation import gettext as _

from callcenter import numbers
from callcenter.contacts.models import Contact, ContactPhone


class ContactPhoneForm(forms.ModelForm):
    """The digits and the match key are derived on save; a number they cannot be derived from is refused here, with
    the same message as contacts.actions, instead of failing the database's non-empty-key check."""

    class Meta:
        model = ContactPhone
        fields = ["slot", "number"]

    def clean_number(self) -> str:
        number = str(self.cleaned_data.get("number") or "").strip()
        if not numbers.digits_only(number):
            raise forms.ValidationError(
                _("“%(number)s” holds no digits; enter a phone number such as +30 210 123 4567.")
                % {"number": number[:40]}
            )
        return number


class ContactPhoneInline(admin.TabularInline):
    model = ContactPhone
    form = ContactPhoneForm
    extra = 0
    max_num = 4
    fields = ["slot", "number", "key"]
    readonly_fields = ["key"]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["display_name", "company", "email"]
    search_fields = ["search_text", "phones__digits", "email"]
    inlines = [ContactPhoneInline]

    def save_model(self, request, obj, form, change):
        obj.search_text = obj.computed_search_text()
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        from callcenter import numbers
        from callcenter.contacts.actions import MatchRules

        rules = MatchRules.current()
        phones = formset.save(commit=False)
        for phone in phones:
            phone.digits = numbers.digits_only(phone.number)
            phone.key = rules.key(phone.number)
            phone.save()
        for phone in formset.deleted_objects:
            phone.delete()
