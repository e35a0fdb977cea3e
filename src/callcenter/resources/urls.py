from django.urls import path

from callcenter.resources import views

app_name = "resources"
urlpatterns = [
    path("", views.resource_list, name="list"),
    path("me/options/", views.own_options, name="own_options"),
    path("<int:pk>/options/", views.resource_options, name="options"),
]
