from django.contrib.auth import views as auth_views
from django.urls import path

from annotator.views import pages

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", pages.project_list, name="project-list"),
]
