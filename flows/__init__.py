"""Prefect flows: one per phase kind of the seed plans, and the tick that runs every open phase."""
