"""setpoint.agents."""
