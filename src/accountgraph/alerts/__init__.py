"""A1-A5: quota alerts, notifications and their delivery.

No area uses alerts; the assembly reaches it through ``alerts.public``.
"""
