from django.contrib import admin

from callcenter.campaigns.models import Campaign, CampaignItem, CampaignType


@admin.register(CampaignType)
class CampaignTypeAdmin(admin.ModelAdmin):
    list_display = ["name"]


class CampaignItemInline(admin.TabularInline):
    model = CampaignItem
    extra = 0


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "campaign_type", "active", "available_from", "available_to"]
    list_filter = ["campaign_type", "active"]
    search_fields = ["name"]
    inlines = [CampaignItemInline]
