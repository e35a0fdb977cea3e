from typing import Any

from django.http import HttpRequest

from callcenter.resources.permissions import is_administrator


def roles(request: HttpRequest) -> dict[str, Any]:
    return {"is_administrator": is_administrator(getattr(request, "user", None))}
