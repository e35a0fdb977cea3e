"""Calls as the CRM stores them: one row per resource a call rang (or, with "create call when answered", one row for
the first resource who answered), S-3.7.

The row keeps the number exactly as the PBX reported it, and its match key (the last N digits) for matching and
search. Timestamps are the PBX's. Duration is talk time: answer to hang-up, 0 when never answered (S-4.4).
"""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class CallKind(models.TextChoices):
    INCOMING = "incoming", _("incoming")
    OUTGOING = "outgoing", _("outgoing")
    MISSED = "missed", _("missed")
    INTERNAL = "internal", _("internal")


class CallDirection(models.TextChoices):
    INBOUND = "in", _("inbound")
    OUTBOUND = "out", _("outbound")


class CallState(models.TextChoices):
    RINGING = "ringing", _("ringing")
    UP = "up", _("in progress")
    ENDED = "ended", _("ended")


def kind_label(kind: str) -> str:
    """A call type's name in the active language (the value itself when it is not a known type)."""
    try:
        return str(CallKind(kind).label)
    except ValueError:
        return str(kind)


class Call(models.Model):
    resource = models.ForeignKey(
        "resources.Resource",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
        verbose_name=_("resource"),
        help_text=_("Empty for calls on an extension that belongs to no resource (kept for administrators)."),
    )
    kind = models.CharField(_("type"), max_length=10, choices=CallKind.choices)
    direction = models.CharField(_("direction"), max_length=3, choices=CallDirection.choices)
    state = models.CharField(_("state"), max_length=8, choices=CallState.choices, default=CallState.RINGING)
    started_at = models.DateTimeField(_("started"))
    answered_at = models.DateTimeField(_("answered"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    duration = models.PositiveIntegerField(_("duration"), default=0, help_text=_("Talk time in seconds."))
    number = models.CharField(_("number"), max_length=80, blank=True, help_text=_("As dialled or received."))
    number_key = models.CharField(max_length=15, blank=True, db_index=True, editable=False)
    # The number's digits without the call prefix: the match key is recomputed from these when "digits to scan"
    # changes (calls.actions.rekey_calls).
    number_digits = models.CharField(max_length=80, blank=True, editable=False)
    caller_name = models.CharField(_("caller name"), max_length=200, blank=True)
    contact = models.ForeignKey(
        "contacts.Contact",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
        verbose_name=_("contact"),
    )
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
        verbose_name=_("campaign"),
    )
    extension = models.CharField(_("extension"), max_length=40)
    pbx_call_id = models.CharField(_("PBX call id"), max_length=200)
    pbx_leg_id = models.CharField(_("PBX channel id"), max_length=200, blank=True)
    transferred_to = models.CharField(_("transferred to"), max_length=80, blank=True)
    transferred_from = models.CharField(_("transferred from"), max_length=40, blank=True)
    reconciled = models.BooleanField(
        _("reconciled"), default=False, help_text=_("Ended while the bridge had lost its PBX link.")
    )
    # S-3.7 "create call when answered": the PBX call id of a group call stored for its first answerer. Unique, so
    # when two agents answer at once the database lets exactly one row in.
    answer_group = models.CharField(max_length=200, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        constraints = [
            # One row per call and extension: a replayed or duplicated event cannot store a call twice.
            models.UniqueConstraint(fields=["pbx_call_id", "extension"], name="call_once_per_extension"),
            models.CheckConstraint(
                condition=Q(answered_at__isnull=True) | Q(answered_at__gte=models.F("started_at")),
                name="call_answered_after_start",
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
                name="call_ended_after_start",
            ),
        ]
        indexes = [
            models.Index(fields=["resource", "-started_at"], name="call_resource_started"),
            models.Index(fields=["-started_at"], name="call_started"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.number} {self.started_at:%Y-%m-%d %H:%M}"

    def talk_seconds(self, now: dt.datetime | None = None) -> int:
        """Answer to hang-up; for a call still up, answer to ``now``; 0 if never answered."""
        if self.answered_at is None:
            return 0
        end = self.ended_at or now
        if end is None:
            return self.duration
        return max(0, int((end - self.answered_at).total_seconds()))

    @property
    def in_progress(self) -> bool:
        return self.state != CallState.ENDED

    def kind_label(self) -> str:
        """What get_kind_display() gives, without rebuilding the translated choices on every call (it runs for every
        call a batch of bridge events touches)."""
        return kind_label(self.kind)


def format_duration(seconds: int) -> str:
    """h:mm:ss, as the list shows it (S-4.4)."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Bridge(models.Model):
    """A bridge ("CallCenter.exe") allowed to deliver events and take commands. Both sides sign every request with
    ``secret`` (wire.sign/verify); it is shown once, when created, and never again."""

    bridge_id = models.SlugField(_("bridge id"), max_length=100, unique=True)
    name = models.CharField(_("name"), max_length=150, blank=True)
    secret = models.CharField(max_length=200, editable=False)
    active = models.BooleanField(_("active"), default=True)
    # Reported by the bridge itself (wire LinkState):
    phone_system = models.CharField(_("phone system"), max_length=10, blank=True)
    pbx_connected = models.BooleanField(_("connected to the PBX"), default=False)
    extensions = models.JSONField(_("extensions followed"), default=list, blank=True)
    version = models.CharField(_("version"), max_length=40, blank=True)
    detail = models.CharField(_("detail"), max_length=500, blank=True)
    # The last LinkState as the bridge sent it: its addresses and ports (checked against S-2), heartbeat interval.
    link = models.JSONField(default=dict, blank=True, editable=False)
    last_seen_at = models.DateTimeField(_("last seen"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["bridge_id"]
        verbose_name = _("bridge")
        verbose_name_plural = _("bridges")

    def __str__(self) -> str:
        return self.name or self.bridge_id


class ProcessedEvent(models.Model):
    """Every wire event id the CRM has taken, so a redelivered event is acknowledged and not applied twice.
    An event whose rules failed is kept here with its payload and the error, for an administrator."""

    event_id = models.CharField(max_length=200, unique=True)
    bridge = models.ForeignKey(Bridge, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    event_type = models.CharField(max_length=40)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    failed = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    payload = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name = _("processed bridge event")
        verbose_name_plural = _("processed bridge events")
        indexes = [models.Index(fields=["received_at"], name="processedevent_received")]

    def __str__(self) -> str:
        return self.event_id


class CallLeg(models.Model):
    """What the PBX has said so far about one call at one extension, merged from its events in any order.

    The Call row (what users see) is projected from this; the leg outlives the row, so a cleared call stays cleared
    when an old event is replayed (S-4.16), and an answer that arrives before the ringing still counts.
    """

    pbx_call_id = models.CharField(max_length=200)
    extension = models.CharField(max_length=40)
    pbx_leg_id = models.CharField(max_length=200, blank=True)
    direction = models.CharField(max_length=12, blank=True)  # in, out, internal-in, internal-out
    remote_number = models.CharField(max_length=80, blank=True)
    remote_name = models.CharField(max_length=200, blank=True)
    transferred_from = models.CharField(max_length=40, blank=True)
    transferred_to = models.CharField(max_length=80, blank=True)
    rang_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    cause = models.IntegerField(default=0)
    answered_elsewhere = models.BooleanField(default=False)
    reconciled = models.BooleanField(default=False)
    cleared = models.BooleanField(default=False)
    call = models.OneToOneField(Call, on_delete=models.SET_NULL, null=True, blank=True, related_name="leg")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pbx_call_id", "extension"], name="callleg_once")]
        indexes = [
            models.Index(fields=["updated_at"], name="callleg_updated"),
            # The phone's state on the screen (ringing / in a call, S-4.11-4.13) reads the open legs of one extension.
            models.Index(fields=["extension", "-rang_at"], condition=Q(ended_at__isnull=True),
                         name="callleg_open_by_extension"),
        ]

    def __str__(self) -> str:
        return f"{self.pbx_call_id}@{self.extension}"
