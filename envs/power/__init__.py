"""GPU power (POLCA): the calibrated latency/power model and the row power-capping env."""

from infragym.envs.power.model import GPUPowerModel, calibrate

__all__ = ["GPUPowerModel", "calibrate"]
