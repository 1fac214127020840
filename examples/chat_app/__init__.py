"""A single-page chat app on the setpoint graph: streamed answer, route, citations and a live entropy chart."""

from examples.chat_app.app import create_app

__all__ = ["create_app"]
