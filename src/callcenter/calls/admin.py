from django.contrib import admin

from callcenter.calls.models import Call


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = ["started_at", "kind", "number", "contact", "resource", "extension", "duration", "state"]
    list_filter = ["kind", "state", "reconciled"]
    search_fields = ["number", "number_key", "caller_name", "pbx_call_id", "extension"]
    raw_id_fields = ["contact", "campaign", "resource"]
    date_hierarchy = "started_at"
