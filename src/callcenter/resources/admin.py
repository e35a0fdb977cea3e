from django.contrib import admin

from callcenter.resources.models import CallCenterSettings, Resource


@admin.register(Resource)
class ResourceAdmin(admin.ModelAdmin):
    list_display = ["__str__", "extension", "is_administrator", "cc_active", "service_address", "service_port"]
    list_filter = ["is_administrator", "cc_active"]
    search_fields = ["user__username", "user__first_name", "user__last_name", "extension"]
    autocomplete_fields = ["user"]
    raw_id_fields = ["working_campaign"]


@admin.register(CallCenterSettings)
class CallCenterSettingsAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return not CallCenterSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False
