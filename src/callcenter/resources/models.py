"""Resources (the CRM users who handle calls) with their call-center options (S-2), and the CRM's global call-center
settings (S-3), one row edited by administrators only.

Validation that involves several fields (service vs internal address/port) lives in ``clean()`` so that forms and the
admin say the same thing; the database constraints back up what a form could miss.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from callcenter import numbers
from callcenter.hosts import same_host

port_validators = [MinValueValidator(1), MaxValueValidator(65535)]
# [0-9], not \d (which takes any Unicode digit, and the PBX dials ASCII); \Z, not $ (which allows a final newline).
extension_validator = RegexValidator(r"^[0-9]{1,8}\Z", _("An extension is 1 to 8 digits, nothing else."))
prefix_validator = RegexValidator(r"^[0-9]*\Z", _("The call prefix may hold digits only."))
host_validator = RegexValidator(
    r"^[A-Za-z0-9]([A-Za-z0-9.\-:]*[A-Za-z0-9])?\Z|^\[[0-9A-Fa-f:.]+\]\Z",
    _("Enter a host name or an IP address, such as 127.0.0.1 or crm.example.com."),
)

DEFAULT_SERVICE_PORT = 5050
DEFAULT_INTERNAL_PORT = 8000


def check_address_ports(service_address: str, service_port: int | None, internal_address: str,
                        internal_port: int | None) -> None:
    """S-1: the bridge and the CRM may share an address, but then they must listen on different ports (addresses
    compared by what they resolve to: localhost is 127.0.0.1)."""
    if (
        service_address
        and internal_address
        and same_host(service_address, internal_address)
        and service_port is not None
        and service_port == internal_port
    ):
        message = _(
            "Service port %(port)s equals the internal communication port on the same address %(address)s; "
            "choose different ports."
        ) % {"port": service_port, "address": service_address}
        raise ValidationError({"internal_port": message})


class Resource(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="resource", verbose_name=_("user")
    )
    is_administrator = models.BooleanField(
        _("administrator"), default=False, help_text=_("Administrators see every call and edit every setting.")
    )
    extension = models.CharField(
        _("extension"),
        max_length=8,
        null=True,
        blank=True,
        unique=True,
        validators=[extension_validator],
        help_text=_("The internal phone number of this resource, so the CRM knows which calls are whose."),
    )
    # S-2.1 - S-2.7
    cc_active = models.BooleanField(
        _("Active"), default=False, help_text=_("Enables the link between the CRM and this resource's bridge.")
    )
    service_address = models.CharField(
        _("Service address"), max_length=255, default="127.0.0.1", validators=[host_validator],
        help_text=_("Network address of the host running the bridge."),
    )
    service_port = models.PositiveIntegerField(
        _("Service port"), default=DEFAULT_SERVICE_PORT, validators=port_validators,
        help_text=_("Port on which the bridge listens."),
    )
    internal_address = models.CharField(
        _("Internal service address"), max_length=255, default="127.0.0.1", validators=[host_validator],
        help_text=_("Network address of the CRM, for the bridge to call back."),
    )
    internal_port = models.PositiveIntegerField(
        _("Internal communication port"), default=DEFAULT_INTERNAL_PORT, validators=port_validators,
        help_text=_("Port on which the CRM listens for the bridge."),
    )
    notify_new_call = models.BooleanField(
        _("Notify on new call"), default=True, help_text=_("Show a notification window for incoming calls.")
    )
    notification_seconds = models.PositiveIntegerField(
        _("Notification duration"), default=10, validators=[MinValueValidator(1), MaxValueValidator(600)],
        help_text=_("Seconds the notification stays visible (1 to 600)."),
    )
    # S-4.2: the working campaign, kept on the server because activities are created there even with no browser open.
    working_campaign = models.ForeignKey(
        "campaigns.Campaign", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("Campaign"),
    )

    # S-4.10 Redial: the last number dialled from the Call Center screen, as typed.
    last_dialled = models.CharField(_("last number dialled"), max_length=80, blank=True, editable=False)

    # What the PBX last reported for this extension (wire AgentState): Busy/DND (S-4.6) and agent log-in. None =
    # not reported yet. Written only by calls.actions from bridge events.
    pbx_busy = models.BooleanField(_("Busy"), null=True, blank=True, editable=False)
    pbx_logged_in = models.BooleanField(_("agent logged in on the PBX"), null=True, blank=True, editable=False)
    pbx_state_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["user__username"]
        verbose_name = _("resource")
        verbose_name_plural = _("resources")
        constraints = [
            models.CheckConstraint(condition=Q(service_port__gte=1, service_port__lte=65535),
                                   name="resource_service_port_range"),
            models.CheckConstraint(condition=Q(internal_port__gte=1, internal_port__lte=65535),
                                   name="resource_internal_port_range"),
            models.CheckConstraint(condition=Q(notification_seconds__gte=1, notification_seconds__lte=600),
                                   name="resource_notification_seconds_range"),
        ]

    def __str__(self) -> str:
        full = self.user.get_full_name()
        return full or self.user.get_username()

    def clean(self) -> None:
        super().clean()
        check_address_ports(self.service_address, self.service_port, self.internal_address, self.internal_port)


class PhoneSystem(models.TextChoices):
    NONE = "none", _("None")
    ASTERISK = "asterisk", _("Asterisk Manager (AMI)")
    TSAPI = "tsapi", _("TSAPI (CSTA)")
    TAPI = "tapi", _("TAPI (Windows)")


class CallCenterSettings(models.Model):
    """S-3.1 - S-3.13. There is one row (pk=1); get it with ``CallCenterSettings.load()``."""

    SINGLETON_PK = 1

    phone_system = models.CharField(
        _("Phone system"), max_length=10, choices=PhoneSystem.choices, default=PhoneSystem.NONE,
        help_text=_("The kind of PBX link. None turns the call center off."),
    )
    digits_to_scan = models.PositiveSmallIntegerField(
        _("Digits to scan"), default=10,
        validators=[MinValueValidator(numbers.MIN_DIGITS_TO_SCAN), MaxValueValidator(numbers.MAX_DIGITS_TO_SCAN)],
        help_text=_("How many trailing digits identify a phone number: with 10, 00301234567890 is read as "
                    "1234567890."),
    )
    outgoing_activity_type = models.ForeignKey(
        "activities.ActivityType", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("Auto-create activity from outgoing call"),
        help_text=_("Activity type created for each outgoing call; empty creates none."),
    )
    incoming_activity_type = models.ForeignKey(
        "activities.ActivityType", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("Auto-create activity from incoming call"),
        help_text=_("Activity type created for each incoming call; empty creates none."),
    )
    auto_show_screen = models.BooleanField(
        _("Auto-show call-center screen"), default=True,
        help_text=_("On an incoming or outgoing call, bring the Call Center screen to the front."),
    )
    default_activity_type = models.ForeignKey(
        "activities.ActivityType", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("Default activity type for calls"),
        help_text=_("Double-clicking a call without an activity creates one of this type."),
    )
    create_call_when_answered = models.BooleanField(
        _("Create call when answered"), default=False,
        help_text=_("Store incoming calls only once answered, and only for the first agent who answers."),
    )
    call_prefix = models.CharField(
        _("Call prefix"), max_length=numbers.MAX_PREFIX_LENGTH, blank=True, validators=[prefix_validator],
        help_text=_("Added to numbers dialled to the outside (never to internal numbers), e.g. 0 for an outside "
                    "line."),
    )
    internal_digits = models.PositiveSmallIntegerField(
        _("Internal phone device digits"), default=3,
        validators=[MinValueValidator(numbers.MIN_INTERNAL_DIGITS), MaxValueValidator(numbers.MAX_INTERNAL_DIGITS)],
        help_text=_("How many digits internal (extension) numbers have."),
    )
    auto_open_activity = models.BooleanField(
        _("Auto-open activity from incoming call"), default=False,
        help_text=_("Open the activity created for an incoming call automatically."),
    )
    update_from_internal_calls = models.BooleanField(
        _("Update call center from internal calls"), default=False,
        help_text=_("Record and show internal calls like external ones; off ignores them."),
    )
    campaign_type = models.ForeignKey(
        "campaigns.CampaignType", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("Call-center campaign type"),
        help_text=_("Campaign type whose campaigns the activities created from calls are linked to."),
    )
    insert_campaign_items = models.BooleanField(
        _("Insert campaign items"), default=False,
        help_text=_("Copy the chosen campaign's items into sale-opportunity activities created from calls."),
    )
    phone_region = models.CharField(
        _("Default phone region"), max_length=2, default="GR",
        help_text=_("Two-letter country code for numbers written without a country code (GR, CY, GB, ...)."),
    )

    class Meta:
        verbose_name = _("call-center settings")
        verbose_name_plural = _("call-center settings")
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="callcentersettings_single_row"),
            models.CheckConstraint(condition=Q(digits_to_scan__gte=4, digits_to_scan__lte=15),
                                   name="callcentersettings_digits_to_scan_range"),
            models.CheckConstraint(condition=Q(internal_digits__gte=1, internal_digits__lte=8),
                                   name="callcentersettings_internal_digits_range"),
        ]

    def __str__(self) -> str:
        return str(_("Call-center settings"))

    @classmethod
    def load(cls) -> CallCenterSettings:
        obj, _created = cls.objects.get_or_create(pk=cls.SINGLETON_PK)
        return obj

    def clean(self) -> None:
        super().clean()
        if self.phone_region and not numbers.is_supported_region(self.phone_region):
            raise ValidationError(
                {"phone_region": _("%(region)s is not a known country code; use two letters such as GR.")
                 % {"region": self.phone_region}}
            )
        self.phone_region = self.phone_region.upper()

    @property
    def enabled(self) -> bool:
        return self.phone_system != PhoneSystem.NONE
