"""Deployments: schedules built from a plan's dates, serving, and the demo."""
