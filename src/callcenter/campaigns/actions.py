"""Every write to campaign types, campaigns and their items goes through here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, QuerySet

from callcenter.campaigns.models import Campaign, CampaignItem, CampaignType


@dataclass(frozen=True)
class ItemSpec:
    description: str
    quantity: Decimal = Decimal(1)
    unit_price: Decimal = Decimal(0)


@transaction.atomic
def ensure_campaign_type(name: str) -> CampaignType:
    campaign_type = CampaignType.objects.filter(name=name.strip()).first()
    if campaign_type is None:
        campaign_type = CampaignType(name=name.strip())
        campaign_type.full_clean()
        campaign_type.save()
    return campaign_type


@transaction.atomic
def ensure_campaign(
    campaign_type: CampaignType,
    name: str,
    *,
    active: bool = True,
    available_from: dt.date | None = None,
    available_to: dt.date | None = None,
    items: Sequence[ItemSpec] = (),
) -> Campaign:
    """The campaign ``name`` of ``campaign_type`` with these fields, and ``items`` at positions 1, 2, ... (items at
    other positions are left alone). Rows already so are not written."""
    campaign = Campaign.objects.select_for_update().filter(campaign_type=campaign_type, name=name.strip()).first()
    wanted: dict[str, object] = {"active": active, "available_from": available_from, "available_to": available_to}
    if campaign is None:
        campaign = Campaign(campaign_type=campaign_type, name=name.strip(), **wanted)
        campaign.full_clean()
        campaign.save()
    elif any(getattr(campaign, key) != value for key, value in wanted.items()):
        for key, value in wanted.items():
            setattr(campaign, key, value)
        campaign.full_clean()
        campaign.save()
    existing = {item.position: item for item in campaign.items.all()}
    for position, spec in enumerate(items, start=1):
        item = existing.get(position) or CampaignItem(campaign=campaign, position=position)
        values: dict[str, object] = {"description": spec.description, "quantity": Decimal(spec.quantity),
                  "unit_price": Decimal(spec.unit_price)}
        if item.pk is not None and all(getattr(item, key) == value for key, value in values.items()):
            continue
        for key, value in values.items():
            setattr(item, key, value)
        item.full_clean()
        item.save()
    return campaign


def available_campaigns(campaign_type: CampaignType, on: dt.date) -> QuerySet[Campaign]:
    """Active campaigns of ``campaign_type`` whose dates include ``on`` (an empty end is open), S-4.2."""
    return Campaign.objects.filter(campaign_type=campaign_type, active=True).filter(
        Q(available_from__isnull=True) | Q(available_from__lte=on),
        Q(available_to__isnull=True) | Q(available_to__gte=on),
    )
