"""A1-A5: quota alerts, notifications and their delivery."""
