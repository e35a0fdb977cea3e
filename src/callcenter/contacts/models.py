"""Contacts and their four phone slots.

A contact has exactly four phone slots (1-4), so "all slots are full" (S-4.17) is a real state. Each filled slot keeps
the number as entered, its digits, and its match key (the last N digits, N = "digits to scan", S-3.2), indexed: a
caller is matched by one index lookup on the key, never by scanning raw numbers. When N changes the keys are
recomputed from the stored digits (contacts.actions.rekey_phones).
"""

from __future__ import annotations

import unicodedata

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

PHONE_SLOTS = (1, 2, 3, 4)


def fold_for_search(text: str) -> str:
    """Lower-case, accents removed, Greek final sigma folded: what S-4.3's accent-insensitive search compares."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.replace("ς", "σ")


def display_name(first_name: str, last_name: str, company: str) -> str:
    """How a contact is named on screens and in pops: "First Last (Company)", or whichever of these it has."""
    name = " ".join(part for part in (first_name, last_name) if part)
    if name and company:
        return f"{name} ({company})"
    return name or company


class Contact(models.Model):
    first_name = models.CharField(_("first name"), max_length=100, blank=True)
    last_name = models.CharField(_("last name"), max_length=100, blank=True)
    company = models.CharField(_("company"), max_length=150, blank=True)
    email = models.EmailField(_("email"), blank=True)
    notes = models.TextField(_("notes"), blank=True)
    # Folded name and company for case- and accent-insensitive search (S-4.3); kept by contacts.actions.
    search_text = models.CharField(max_length=400, blank=True, db_index=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        constraints = [
            models.CheckConstraint(
                condition=~Q(first_name="", last_name="", company=""),
                name="contact_has_a_name",
                violation_error_message=_("Give the contact a first name, a last name or a company."),
            )
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return display_name(self.first_name, self.last_name, self.company)

    def computed_search_text(self) -> str:
        return fold_for_search(" ".join(p for p in (self.first_name, self.last_name, self.company) if p))


class ContactPhone(models.Model):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="phones", verbose_name=_("contact"))
    slot = models.PositiveSmallIntegerField(
        _("slot"), validators=[MinValueValidator(PHONE_SLOTS[0]), MaxValueValidator(PHONE_SLOTS[-1])]
    )
    number = models.CharField(_("number"), max_length=80)
    digits = models.CharField(max_length=80, editable=False)
    key = models.CharField(max_length=15, editable=False)

    class Meta:
        ordering = ["contact", "slot"]
        verbose_name = _("phone")
        verbose_name_plural = _("phones")
        constraints = [
            models.UniqueConstraint(fields=["contact", "slot"], name="contactphone_one_number_per_slot"),
            models.CheckConstraint(
                condition=Q(slot__gte=PHONE_SLOTS[0]) & Q(slot__lte=PHONE_SLOTS[-1]),
                name="contactphone_slot_1_to_4",
            ),
            models.CheckConstraint(condition=~Q(key=""), name="contactphone_key_not_empty"),
        ]
        indexes = [models.Index(fields=["key"], name="contactphone_key")]

    def __str__(self) -> str:
        return self.number
