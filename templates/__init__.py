"""Jinja2 templates that dagger_wf renders (installed as dagger_wf.templates)."""
