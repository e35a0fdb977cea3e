"""Campaign types, campaigns and their items (the products or offers copied into sale opportunities, S-3.13)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class CampaignType(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("campaign type")
        verbose_name_plural = _("campaign types")

    def __str__(self) -> str:
        return self.name


class Campaign(models.Model):
    campaign_type = models.ForeignKey(
        CampaignType, on_delete=models.PROTECT, related_name="campaigns", verbose_name=_("campaign type")
    )
    name = models.CharField(_("name"), max_length=150)
    active = models.BooleanField(_("active"), default=True)
    available_from = models.DateField(_("available from"), null=True, blank=True)
    available_to = models.DateField(_("available to"), null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        constraints = [
            models.UniqueConstraint(fields=["campaign_type", "name"], name="campaign_unique_name_per_type"),
            models.CheckConstraint(
                condition=Q(available_from__isnull=True)
                | Q(available_to__isnull=True)
                | Q(available_from__lte=models.F("available_to")),
                name="campaign_available_from_before_to",
                violation_error_message=_("“Available from” must not be after “available to”."),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def is_available(self, on: dt.date) -> bool:
        """Active, and ``on`` lies within its dates (each end inclusive, an empty end is open)."""
        if not self.active:
            return False
        if self.available_from and on < self.available_from:
            return False
        return not (self.available_to and on > self.available_to)


class CampaignItem(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items", verbose_name=_("campaign"))
    description = models.CharField(_("description"), max_length=200)
    quantity = models.DecimalField(
        _("quantity"), max_digits=12, decimal_places=2, default=Decimal(1), validators=[MinValueValidator(0)]
    )
    unit_price = models.DecimalField(
        _("unit price"), max_digits=12, decimal_places=2, default=Decimal(0), validators=[MinValueValidator(0)]
    )
    position = models.PositiveIntegerField(_("position"), default=0)

    class Meta:
        ordering = ["campaign", "position", "id"]
        verbose_name = _("campaign item")
        verbose_name_plural = _("campaign items")

    def __str__(self) -> str:
        return self.description
