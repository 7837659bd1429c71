"""The sender's wizard: personal data, verification, recipients, message and
files, options, notification mail, start transaction."""

from flask import Blueprint

bp = Blueprint("wizard", __name__, url_prefix="/send", template_folder="templates")
# The operator's upload portals, /to/<slug>: the wizard's first step, for a transfer to fixed recipients.
portals_bp = Blueprint("portals", __name__, url_prefix="/to")

from . import tus, views  # noqa: E402,F401  (registers the routes)
