"""Forms shared by both blueprints."""

from flask_wtf import FlaskForm


class ButtonForm(FlaskForm):
    """A form that is just a button: carries the CSRF token, nothing else."""
