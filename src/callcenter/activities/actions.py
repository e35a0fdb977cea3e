"""Every write to activity types and activities goes through here."""

from __future__ import annotations

from django.db import transaction

from callcenter.activities.models import ActivityKind, ActivityType


@transaction.atomic
def ensure_activity_type(name: str, kind: ActivityKind | str, *, active: bool = True) -> ActivityType:
    """The activity type called ``name``, created or brought to ``kind`` and ``active``; nothing is written when it
    is already so."""
    activity_type = ActivityType.objects.select_for_update().filter(name=name.strip()).first()
    if activity_type is None:
        activity_type = ActivityType(name=name.strip())
    elif activity_type.kind == kind and activity_type.active == active:
        return activity_type
    activity_type.kind = ActivityKind(kind)
    activity_type.active = active
    activity_type.full_clean()
    activity_type.save()
    return activity_type
