"""Runnable examples of embedding setpoint in other programs (not part of the installed package)."""
