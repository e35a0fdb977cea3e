"""An activity's page (opened from the Call Center screen, S-4.18 and S-3.10). Visibility as for calls: an
administrator sees every activity; a resource those that are its own or come from its own calls; another's id is a
404."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from callcenter.activities.models import Activity
from callcenter.resources.permissions import is_administrator, resource_of


def visible_activities(user: Any) -> QuerySet[Activity]:
    if is_administrator(user):
        return Activity.objects.all()
    resource = resource_of(user)
    if resource is None:
        return Activity.objects.none()
    return Activity.objects.filter(Q(resource=resource) | Q(call__resource=resource))


@login_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    activity = get_object_or_404(
        visible_activities(request.user).select_related(
            "activity_type", "contact", "resource__user", "campaign", "call", "created_by"
        ),
        pk=pk,
    )
    items = list(activity.items.all())
    return render(request, "activities/detail.html", {
        "activity": activity, "items": items, "total": sum((item.amount for item in items), 0),
    })
