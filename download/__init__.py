"""The recipient's side: transaction ID + password, then the files."""

from flask import Blueprint

bp = Blueprint("download", __name__, url_prefix="/download", template_folder="templates")

from . import views  # noqa: E402,F401  (registers the routes)
