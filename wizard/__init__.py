"""The sender's wizard: personal data, verification, recipients, message and
files, options, notification mail, start transaction."""

from flask import Blueprint

bp = Blueprint("wizard", __name__, url_prefix="/send", template_folder="templates")

from . import tus, views  # noqa: E402,F401  (registers the routes)
