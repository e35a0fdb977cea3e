"""Activity types and activities (with their items). Calls become activities by the rules of S-3.3/3.4/3.6."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


class ActivityKind(models.TextChoices):
    PHONE_CALL = "phone_call", _("Phone call")
    SALE_OPPORTUNITY = "sale_opportunity", _("Sale opportunity")
    TASK = "task", _("Task")
    MEETING = "meeting", _("Meeting")


class ActivityType(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=ActivityKind.choices, default=ActivityKind.PHONE_CALL)
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("activity type")
        verbose_name_plural = _("activity types")

    def __str__(self) -> str:
        return self.name

    @property
    def is_sale_opportunity(self) -> bool:
        return self.kind == ActivityKind.SALE_OPPORTUNITY


class ActivityStatus(models.TextChoices):
    OPEN = "open", _("Open")
    DONE = "done", _("Done")
    CANCELLED = "cancelled", _("Cancelled")


class Activity(models.Model):
    activity_type = models.ForeignKey(
        ActivityType, on_delete=models.PROTECT, related_name="activities", verbose_name=_("activity type")
    )
    subject = models.CharField(_("subject"), max_length=200)
    notes = models.TextField(_("notes"), blank=True)
    status = models.CharField(_("status"), max_length=12, choices=ActivityStatus.choices, default=ActivityStatus.OPEN)
    starts_at = models.DateTimeField(_("starts at"))
    contact = models.ForeignKey(
        "contacts.Contact",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="activities",
        verbose_name=_("contact"),
    )
    resource = models.ForeignKey(
        "resources.Resource",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="activities",
        verbose_name=_("resource"),
    )
    # One activity per call at most: the database, not luck, keeps two agents from creating two (S-4.18).
    call = models.OneToOneField(
        "calls.Call",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="activity",
        verbose_name=_("call"),
    )
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="activities",
        verbose_name=_("campaign"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        verbose_name = _("activity")
        verbose_name_plural = _("activities")
        indexes = [models.Index(fields=["resource", "-starts_at"], name="activity_resource_starts")]

    def __str__(self) -> str:
        return self.subject

    def total(self) -> Decimal:
        return sum((item.amount for item in self.items.all()), Decimal(0))


class ActivityItem(models.Model):
    activity = models.ForeignKey(Activity, on_delete=models.CASCADE, related_name="items", verbose_name=_("activity"))
    description = models.CharField(_("description"), max_length=200)
    quantity = models.DecimalField(
        _("quantity"), max_digits=12, decimal_places=2, default=Decimal(1), validators=[MinValueValidator(0)]
    )
    unit_price = models.DecimalField(
        _("unit price"), max_digits=12, decimal_places=2, default=Decimal(0), validators=[MinValueValidator(0)]
    )
    campaign_item = models.ForeignKey(
        "campaigns.CampaignItem", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    position = models.PositiveIntegerField(_("position"), default=0)

    class Meta:
        ordering = ["activity", "position", "id"]
        verbose_name = _("activity item")
        verbose_name_plural = _("activity items")

    def __str__(self) -> str:
        return self.description

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price
