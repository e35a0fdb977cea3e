from django.urls import path

from callcenter.calls import views

app_name = "calls"
urlpatterns = [
    path("", views.screen, name="screen"),
    path("calls/", views.rows, name="rows"),
    path("calls/<int:pk>/", views.details, name="details"),
    path("calls/<int:pk>/row/", views.row, name="row"),
    path("calls/<int:pk>/contact/", views.set_contact, name="set_contact"),
    path("calls/<int:pk>/link/", views.link_contact, name="link"),
    path("calls/<int:pk>/link/new/", views.link_new_contact, name="link_new"),
    path("calls/<int:pk>/activity/", views.create_activity, name="activity"),
    path("calls/<int:pk>/open/", views.open_call, name="open"),
    path("status/", views.status, name="status"),
    path("contacts/", views.contact_search, name="contact_search"),
    path("campaign/", views.set_campaign, name="campaign"),
    path("clear/", views.clear_selected, name="clear_selected"),
    path("clear-all/", views.clear_all, name="clear_all"),
    path("dial/", views.dial, name="dial"),
    path("redial/", views.redial, name="redial"),
    path("answer/", views.answer, name="answer"),
    path("hangup/", views.hangup, name="hangup"),
    path("transfer/", views.transfer, name="transfer"),
    path("busy/", views.busy, name="busy"),
]
