"""Supervision: process-level (``supervisors.node``) and, later, actor-level trees."""
