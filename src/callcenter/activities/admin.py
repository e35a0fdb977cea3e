from django.contrib import admin

from callcenter.activities.models import Activity, ActivityItem, ActivityType


@admin.register(ActivityType)
class ActivityTypeAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "active"]
    list_filter = ["kind", "active"]


class ActivityItemInline(admin.TabularInline):
    model = ActivityItem
    extra = 0
    raw_id_fields = ["campaign_item"]


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ["subject", "activity_type", "status", "starts_at", "contact", "resource", "campaign"]
    list_filter = ["activity_type", "status"]
    search_fields = ["subject", "contact__search_text"]
    raw_id_fields = ["contact", "call", "campaign", "resource"]
    date_hierarchy = "starts_at"
    inlines = [ActivityItemInline]
