"""setpoint.tools."""
