"""Statistics shared by the package and ``analysis/``: intervals and the power of a study."""
