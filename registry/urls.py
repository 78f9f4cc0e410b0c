from django.urls import path

from . import views

urlpatterns = [
    path("<slug:source>", views.receive, name="webhook"),
    path("<slug:source>/<str:token>", views.receive, name="webhook-token"),
]
