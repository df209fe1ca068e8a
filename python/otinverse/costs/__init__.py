"""Ground costs of the Euclidean distance between points or pixel positions (Barton & Tai, §3.1)."""

from ._ground_cost import GROUND_COSTS, grid_cost, grid_points, ground_cost

__all__ = ["GROUND_COSTS", "grid_cost", "grid_points", "ground_cost"]
