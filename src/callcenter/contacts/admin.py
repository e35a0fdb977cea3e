from django.contrib import admin

from callcenter.contacts.models import Contact, ContactPhone


class ContactPhoneInline(admin.TabularInline):
    model = ContactPhone
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
