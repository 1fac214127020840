"""setpoint.adapters."""
