"""S1-S11: resources, sharing settings, user groups and effective sharing."""
