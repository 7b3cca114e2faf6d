"""The web dashboard and submission portal (FastAPI, server-rendered Jinja2, no build step).

``kiemdiem.web.app.create_app`` builds the application; routes read through
``kiemdiem.web.queries`` and act through the same core functions as the CLI and the flows.
"""
