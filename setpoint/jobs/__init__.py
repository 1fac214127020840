"""Offline jobs: calibration, evaluation, distillation and reading trace files."""
