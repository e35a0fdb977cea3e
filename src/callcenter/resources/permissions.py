"""Who may see and change what. Administrators (a resource with the administrator flag, or a Django superuser) see
every call and edit every setting; any other resource sees its own calls and edits its own notification options."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

from callcenter.resources.models import Resource


def resource_of(user: Any) -> Resource | None:
    if not getattr(user, "is_authenticated", False):
        return None
    try:
        return user.resource
    except Resource.DoesNotExist:
        return None


def is_administrator(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    resource = resource_of(user)
    return bool(resource and resource.is_administrator)


def require_administrator(user: Any) -> None:
    if not is_administrator(user):
        raise PermissionDenied("administrators only")
