"""setpoint.graphs."""
