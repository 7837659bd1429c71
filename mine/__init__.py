"""My transfers: a sender proves their address with a code and sees, follows,
extends, notifies again, reports on or withdraws what they sent."""

from flask import Blueprint

bp = Blueprint("mine", __name__, url_prefix="/mine", template_folder="templates")

from . import views  # noqa: E402,F401  (registers the routes)
